"""IB's published rules and vocabulary, shared by the broker backends and the simulated world.

``ibkr_spec.errors`` (IB's error codes and the IB-coded error), ``ibkr_spec.historical`` (the
duration / bar-size grammar of historical-data requests and how far one request may reach),
``ibkr_spec.commissions`` (IBKR Pro tiered commissions), ``ibkr_spec.margin`` (Reg-T margin) and
``ibkr_spec.lots`` (US round lots tiered by price).
Nothing here imports the rest of the project (``lint-imports`` checks it): a real-IB install
uses these rules without the simulator.
"""
