"""The parts of the report, one module each: every part is a function of a :class:`.context.ReportContext`
that fills the summary (lines, tables, files) and adds its figures and tables to the page.

:mod:`.leaderboard` (with :mod:`.retrieval`), :mod:`.robustness`, :mod:`.fewshot`, :mod:`.published`,
:mod:`.comparisons`; :mod:`.page` puts them on one HTML page.
"""
