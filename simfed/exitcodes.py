"""Exit codes of every ``simfed`` command, in one place."""

EXIT_OK = 0
#: the command ran but something failed (a run, a write, a cluster)
EXIT_FAILURE = 1
#: bad input: a scenario, a file, an argument (one clear line, no traceback)
EXIT_INVALID = 2
#: interrupted with Ctrl-C (partial results were written)
EXIT_INTERRUPTED = 130
#: the reader of standard output went away (``simfed schema | head -1``), as a
#: process killed by SIGPIPE reports it in a shell (128 + 13)
EXIT_BROKEN_PIPE = 141

__all__ = ["EXIT_BROKEN_PIPE", "EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_INVALID", "EXIT_OK"]
