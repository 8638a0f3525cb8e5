"""The failure messages vlmix writes into img2dataset's rows; ``guards.classify_error`` keys on them."""

BODY_TOO_LARGE = "vlmix: body too large"
NOT_AN_IMAGE = "vlmix: not an image"
DECOMPRESSION_BOMB = "vlmix: decompression bomb"
TRUNCATED = "vlmix: truncated image"
TOO_SLOW = "vlmix: too slow"  # the URL's wall-clock budget ran out
TOO_MANY_REDIRECTS = "vlmix: too many redirects"
UNSUPPORTED_ENCODING = "vlmix: unsupported content encoding"
BAD_ENCODING = "vlmix: body does not match its content encoding"
