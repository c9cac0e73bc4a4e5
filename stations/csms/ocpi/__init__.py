"""OCPI 2.2.1, this app in the eMSP role toward a CPO's platform.

envelope.py   the response envelope, status codes, token headers
client.py     our calls to the CPO (auth and tracing headers, envelope checks)
credentials.py  the credentials handshake, both ways
views.py      the endpoints the CPO calls: versions, version details, credentials
"""
