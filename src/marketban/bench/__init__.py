"""The benchmarks (``marketban bench``, ``make bench``): measurement, never on the product's path.

``engine`` times the decision engine in process; ``e2e`` drives a worker, the raw passthrough
lanes (``passthrough``) it is compared with, and the reference data load (``reference``) on the
broker; ``report`` writes docs/benchmarks.md from their figures.
"""
