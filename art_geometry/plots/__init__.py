"""
Matplotlib figures for each metric family (one module per family). Each function returns a ``Figure`` and never
calls ``plt.show()``.
"""
