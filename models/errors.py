"""The one error type a stage raises for bad input: the CLI prints it without a traceback."""


class PipelineError(Exception):
    """A problem with the user's input (config, files) that names what is wrong and where."""
