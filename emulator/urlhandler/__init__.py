"""Registers the ``tinytwin://`` URL scheme with pyserial on import."""
import serial

if __name__ not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append(__name__)
