"""The limits of what the service stores, in one place: the models' CHECK constraints, the
request validation and migrate-sqlite's checks read them from here.

Imports nothing, so that migrate-sqlite's reader processes can use them without the app.
"""

NAME_MAX_LENGTH = 200  # characters of users.name
CONTENT_MAX_LENGTH = 100_000  # characters of posts.content
BIGINT_MAX = 2**63 - 1  # the largest id a bigint column holds
