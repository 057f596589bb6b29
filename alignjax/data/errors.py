"""The data layer's errors, below every module that raises them (``builtin`` and ``sources`` both do)."""


class DataError(ValueError):
    """Bad data or a bad data spec. The message is one line naming the file, field or line."""


class BadDataError(DataError):
    """Data found bad while reading it: more unreadable records than the threshold allows, or a
    file that cannot be read on. Training raises it from ``next(iterator)``, mid-run; the
    message is one line, e.g. ``corpus.jsonl:412: 37 of 312 records unreadable (11.9%) >
    data.max_bad_fraction=0.01 (last: malformed JSON ...)``."""


# --runner: alignjax-data tokenize/filter/synth as Apache Beam pipelines (alignjax.data.beam). Here,
# at the bottom of the data layer, so the commands can tell without importing apache_beam.
BEAM_EPILOG = ("--runner=<Beam runner> (DirectRunner, PrismRunner, DataflowRunner, ...) runs the command as an "
               "Apache Beam pipeline; the flags this command does not know go to Beam's PipelineOptions "
               "(e.g. --direct_num_workers=2 --direct_running_mode=multi_processing, --project, --temp_location).")


def on_beam(argv: list[str]) -> bool:
    return any(a == "--runner" or a.startswith("--runner=") for a in argv)
