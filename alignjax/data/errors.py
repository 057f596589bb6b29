"""The data layer's errors, below every module that raises them (``builtin`` and ``sources`` both do)."""


class DataError(ValueError):
    """Bad data or a bad data spec. The message is one line naming the file, field or line."""


class BadDataError(DataError):
    """Data found bad while reading it: more unreadable records than the threshold allows, or a
    file that cannot be read on. Training raises it from ``next(iterator)``, mid-run; the
    message is one line, e.g. ``corpus.jsonl:412: 37 of 312 records unreadable (11.9%) >
    data.max_bad_fraction=0.01 (last: malformed JSON ...)``."""
