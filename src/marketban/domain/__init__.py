"""The pure domain core: models, calendars, ban state and the decision engine.

Nothing here imports Faust or aiokafka or reads the wall clock: time comes from the events.
"""
