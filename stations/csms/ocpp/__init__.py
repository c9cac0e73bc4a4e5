"""OCPP 2.0.1 / 2.1 direct: we are the chargers' CSMS, through the gateway process (gateway.py)."""
