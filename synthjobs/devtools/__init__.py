"""Running the service on one machine: the processes tests, benches and the demo start, and the demo."""
