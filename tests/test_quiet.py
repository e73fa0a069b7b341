"""Lightning's cloud advertisements are filtered out; everything else it says still shows."""

import logging

from mnist_lightning.quiet import QuietLightning


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("lightning.pytorch.utilities.rank_zero", logging.INFO, __file__, 1, message, None, None)


def test_only_the_advertisements_are_dropped():
    quiet = QuietLightning()
    assert not quiet.filter(record("💡 Tip: For seamless cloud uploads and versioning, try installing litmodels"))
    assert not quiet.filter(record("Trainer already configured with model summary callbacks: [<class 'ExactSummary'>]"))
    assert quiet.filter(record("GPU available: False, used: False"))
    assert quiet.filter(record("Tip: a tip that is not the cloud's"))
