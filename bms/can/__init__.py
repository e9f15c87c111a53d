"""CAN layer of the BMS: the DBC (single source of truth), a batch codec compiled from it, E2E protection.

- :mod:`bms.can.dbc`    load ``dbc/bms_fil.dbc`` once with cantools; lookups (message, cycle time, E2E fields)
- :mod:`bms.can.codec`  numba batch decode/encode of whole frame batches into/out of flat value arrays
- :mod:`bms.can.e2e`    CRC-8 SAE J1850 and alive-counter protection of the E2E messages
- :mod:`bms.can.docgen` ``docs/can.md`` generated from the DBC (``bms can-doc``)
"""

from bms.can.dbc import DEFAULT_DBC_PATH, bitrate_bps, cycle_time_s, database, message

__all__ = ["DEFAULT_DBC_PATH", "bitrate_bps", "cycle_time_s", "database", "message"]
