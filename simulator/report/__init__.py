"""Interactive plotly reports: one self-contained HTML page per simulated step or per sweep.

``write_report(source, path)`` is the entry point every command uses (``moesim report``, and ``--report`` on
simulate, replay and sweep). ``source`` is a :class:`~moesim.simulator.simulate.Result` (with its scenario), a
:class:`ResultReport`, a result JSON dict, or sweep rows (a list of dicts).
"""

from moesim.simulator.report.build import build_page, load_report_source, write_report
from moesim.simulator.report.payload import ResultReport, report_from_dict, report_from_result, result_payload

__all__ = ["ResultReport", "build_page", "load_report_source", "report_from_dict", "report_from_result",
           "result_payload", "write_report"]
