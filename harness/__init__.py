"""esp-smoltcp-hil: hardware-in-the-loop test harness for ESP32-P4 firmware on the smoltcp stack."""

__version__ = "0.1.0"
