"""The wire protocols: SSE framing, body decoding and one adapter per model API, each turning a
captured exchange into the normalized `tracetap.model.Round`. Depends only on the base modules.
"""
