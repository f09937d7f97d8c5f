"""Update middlewares, in the order the dispatcher factory registers them:

dedup → database session → account → locale → error reply → throttle → handlers.
"""
