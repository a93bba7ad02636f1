"""Show the package's own source in a notebook, so the book never drifts from the
code."""

import inspect


def show_source(obj):
    """Display the source of a function, class or module, syntax-highlighted.

    Works in Jupyter, Colab and the rendered book (``IPython.display.Code``).
    """
    from IPython.display import Code

    return Code(inspect.getsource(obj), language="python")
