"""Load tests for many detectors on one broker (`make fleet-test`).

Nothing here runs on a Pi: it starts real `edge run` daemons, a real mosquitto and a
recording subscriber on this machine, and measures the broker path (fleet.py).
"""
