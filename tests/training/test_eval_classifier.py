import torch

from training.classifier import accuracy, train_classifier
from training.data import ImageDataset
from training.evaluate import conditional_accuracy


def test_evaluation_classifier_is_accurate_and_deterministic(digits: ImageDataset) -> None:
    a = train_classifier(digits, seed=0)
    b = train_classifier(digits, seed=0)
    assert accuracy(a, digits.test_x, digits.test_y) >= 0.95
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_conditional_accuracy_reports_overall_and_per_class() -> None:
    classifier = torch.nn.Linear(4, 3)
    with torch.no_grad():
        classifier.weight.copy_(torch.eye(3, 4))
        classifier.bias.zero_()
    images = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]])
    labels = torch.tensor([0, 1, 2, 2])  # the third is wrong
    scores = conditional_accuracy(classifier, images, labels)
    assert scores == {"overall": 0.75, "per_class": {"0": 1.0, "1": 1.0, "2": 0.5}}
    as_uint8 = conditional_accuracy(classifier, (images * 255).to(torch.uint8), labels)
    assert as_uint8 == scores
