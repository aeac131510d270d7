"""The decider: the engine in aiokafka consume-transform-produce loops, one task per partition.

Never imports faust: the Faust app hosts a ``Decider`` as one of its services.
"""
