"""The FQL cases (docs/filters.md) every evaluator must agree on: the Python one
(tests/test_fql.py) and the browser interpreter in Chromium (e2e/test_filters.py)."""

EVENT = {
    "type": "track",
    "event": "Button Clicked",
    "userId": "u-42",
    "messageId": "m-1",
    "context": {"library": {"name": "analytics.js", "version": "1.0"}, "ip": "203.0.113.9", "page": {"path": "/login"}},
    "properties": {"features": ["discounts", "dark-mode"], "price": 19.5, "count": 3, "enabled": True, "empty": "",
                   "nothing": None, "zero": 0, "nested": {"deep": {"x": "yes"}}, "odd key": "spaced", "one": 1},
    "traits": {"email": "ada@company.com", "plan": "pro"},
}

# (condition, expected result on EVENT)
CASES = [
    ('event = "Button Clicked"', True),
    ("event = 'Screen Tapped'", False),
    ('context.path.path = "/login"', False),
    ('context.page.path = "/login"', True),
    ('type = "identify" or type = "track"', True),
    ('event = "Button Clicked" and type = "track"', True),
    ('match(context.library.version, "1.*")', True),
    ('match(context.library.version, "2.*")', False),
    ('type = "track" and (event = "Click" or match(event, "Button *"))', True),
    ('!contains(context.library.name, "js")', False),
    ('match(event, "Button ?licked")', True),
    ('match(event, "button*")', False),  # case-sensitive
    ('match(event, "*.*")', False),  # a dot is literal
    ('match(traits.email, "*@company.com")', True),
    ('match(properties.count, "3")', False),  # match() takes text only
    ('contains(properties.features, "dark-mode")', True),
    ('contains(properties.features, "blink")', False),
    ('contains(traits.email, "@")', True),
    ('properties.price > 10', True),
    ('properties.price >= 19.5', True),
    ('properties.price < 19.5', False),
    ('properties.price <= 19.5', True),
    ('properties.count != 3', False),
    ('properties.count = 3.0', True),
    ('properties.one = true', False),  # true is not 1
    ('properties.enabled = true', True),
    ('properties.enabled', True),
    ('properties.empty', False),
    ('properties.zero', False),
    ('properties.features', True),
    ('properties.missing', False),
    ('properties.nothing = null', True),
    ('properties.missing = null', True),  # a missing field equals null
    ('properties.missing != null', False),
    ('exists(properties.nothing)', False),
    ('exists(properties.zero)', True),
    ('exists(traits.plan)', True),
    ('!exists(userId)', False),
    ('userId = "u-42"', True),
    ('traits.plan > "a"', False),  # < > compare numbers only
    ('properties.nested.deep.x = "yes"', True),
    ('properties.`odd key` = "spaced"', True),
    ('!(type = "track")', False),
    ('!!(type = "track")', True),
    ('type = "page" or type = "screen" or properties.count > 2 and traits.plan = "pro"', True),
    ('(type = "page" or type = "screen" or properties.count > 2) and traits.plan = "free"', False),
    ('properties.count > -1', True),
    ('properties.price = 1.95e1', True),
    ('event = "Button \\"Clicked\\""', False),
    ('true', True),
    ('false or null', False),
    ('"track" = type', True),
]

# (condition, position of the error) — 0-based character offsets
ERRORS = [
    ('event = ', 8),
    ('event == "x"', 7),
    ('(type = "track"', 15),
    ('type = "track")', 14),
    ('event = "open', 8),
    ('match(event)', 0),
    ('exists("x")', 0),
    ('match(event, traits.x)', 0),
    ('type = "a" and', 14),
    ('type = "a" # b', 11),
    ('properties. = 1', 12),
    ('', 0),
    ('and', 0),
    ('contains(a, "b"', 15),
]
