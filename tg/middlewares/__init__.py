"""Update middlewares, in the order the dispatcher factory registers them:

private chats only → dedup → throttle → database session → account → locale →
error reply → handlers.
"""
