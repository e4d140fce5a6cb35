"""Taking failing ranks' reports out of a worker's stderr stream.

A rank that fails where it cannot reply over the link (any rank but 0) writes its sealed
error as short lines ``HPCF-RANK-REPORT id index count hex`` on stderr (``wire.replies``);
a launcher may put its own lines between them and the stream arrives in arbitrary chunks.
Every handle that reads a worker's stderr (a local process's pipe, a Flux job's output)
passes it through one ``RankReportFilter``: the user sees the rest of the stream, the
driver gets the joined reports.
"""

from __future__ import annotations

from hpcfutures.wire.replies import REPORT_MARK

REPORT_MAX = 64 << 20  # bytes: a report line longer than this is dropped, not buffered


class RankReportFilter:
    """Splits a stderr stream into what to show and the reports of failing ranks.

    ``reports`` holds complete reports (the sealed envelope, hex) in arrival order.
    """

    def __init__(self):
        self.reports: list[bytes] = []
        self._carry = b""  # the start of a line that may be a report
        self._pieces: dict[bytes, dict[int, bytes]] = {}  # report id -> the lines seen so far

    def feed(self, chunk: bytes) -> bytes:
        """The next chunk of the stream.

        Args:
            chunk: bytes read from the worker's stderr.

        Returns:
            What of the stream (the carry-over of earlier chunks included) is to be shown:
            everything but report lines; an incomplete line that may be one is held back
            until the next chunk (or ``flush``).
        """
        data = self._carry + chunk
        shown = []
        while True:
            at = data.find(REPORT_MARK)
            if at < 0:
                keep = _partial_mark(data)
                shown.append(data[: len(data) - keep])
                self._carry = data[len(data) - keep :]
                break
            shown.append(data[:at])
            end = data.find(b"\n", at)
            if end < 0:
                self._carry = data[at:] if len(data) - at < REPORT_MAX else b""
                break
            self._add_piece(data[at + len(REPORT_MARK) : end])
            data = data[end + 1 :]
        return b"".join(shown)

    def flush(self) -> bytes:
        """The stream ended: what was held back, to be shown (an unfinished report line)."""
        carry, self._carry = self._carry, b""
        return carry

    def take(self) -> list[bytes]:
        """The complete reports so far, taken (a second call returns only newer ones)."""
        reports, self.reports = self.reports, []
        return reports

    def _add_piece(self, line: bytes) -> None:
        """One line of a report (``id index count hex``); a report is complete when every
        index arrived. A malformed line is dropped: the report then stays incomplete."""
        fields = line.split()
        if len(fields) != 4 or not fields[1].isdigit() or not fields[2].isdigit():
            return
        report, index, count, piece = fields[0], int(fields[1]), int(fields[2]), fields[3]
        pieces = self._pieces.setdefault(report, {})
        pieces[index] = piece
        if len(pieces) == count:
            del self._pieces[report]
            self.reports.append(b"".join(pieces[i] for i in range(count) if i in pieces))


def _partial_mark(data: bytes) -> int:
    """Length of the longest end of ``data`` that starts ``REPORT_MARK``."""
    for n in range(min(len(REPORT_MARK) - 1, len(data)), 0, -1):
        if REPORT_MARK.startswith(data[-n:]):
            return n
    return 0
