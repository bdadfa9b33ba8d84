"""The ML package: data, train, evaluate, registry, serve and monitor.

It knows nothing of ``infra``; it leans only on the base layer in ``tuneops``.
"""
