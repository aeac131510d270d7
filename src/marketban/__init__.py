"""marketban: enforcement of CSRC securities market-entry bans on order flow."""

__version__ = "0.1.0"
