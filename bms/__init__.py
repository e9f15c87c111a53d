"""bms-fil: battery-management-system firmware-in-the-loop toolkit.

Sign convention (everywhere in this project): pack and cell current is positive when
charging and negative when discharging.
"""

__version__ = "0.1.0"
