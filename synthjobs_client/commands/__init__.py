"""The `synthjobs` command's sub-commands, one module per noun; `synthjobs_client.cli` assembles them."""
