"""Update middlewares, in the order the dispatcher factory registers them:

private chats only → dedup → database session → account → locale → error reply →
throttle → handlers.
"""
