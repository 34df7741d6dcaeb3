"""Reading the pack at run time: every byte through the runtime's reader (one latency per request), each part
verified against its sha256 before a tensor is made of it. The first request reads the header and the first
answer's parts, building the skeleton while the weights arrive; every later request reads one step's parts,
contiguous in the pack."""
import threading
import time
from typing import Callable, Optional

from ..errors import PWLError
from ..manifests import EXPORT_FIX
from ..models import BlockNet
from .pack import PackIndex, read_index
from .skeletons import skeleton_factory

OVERLAP_MIN_S = 0.005  # the first request's weights take at least this long to arrive: build the skeleton meanwhile


def overlaps_first_read(weight_bytes: float, bandwidth: float) -> bool:
    """Are the skeletons built while the first request's weights arrive? Only where that takes long enough to
    hide them: on fast storage the two threads would just contend for one interpreter (+0.6 ms on `nvme`)."""
    return weight_bytes / bandwidth >= OVERLAP_MIN_S


class PackRequests:
    """The runtime's requests to its pack (mixed into pwl.runtime.serving.Runtime: uses `reader`, `path`,
    `factory`, `index` and `_event`)."""

    def _first_request(self, parts: Callable[[PackIndex], list[str]], role: str,
                       spare: Optional[Callable[[BlockNet], None]] = None) -> tuple[dict, dict, BlockNet]:
        """The first request: the header, then `parts(index)` (the student, or the teacher's blocks without the
        converters between them), one latency in all. The `role`'s skeleton needs only the header's configs, so
        it is built while the weights are still arriving (a reader thread fetches them); if they are still
        arriving after that, `spare(skeleton)` uses the wait too (PWL: the teacher's skeleton). Returns
        ({part: (bytes, file offset)}, costs: read_s = the request with the skeleton built during it (or, on
        storage too fast to hide it, right after it), skeleton_s, the skeleton); sets self.index."""
        t = time.perf_counter()
        chunks, errors = {}, []
        try:
            with self.reader.open(self.path) as f:
                self.index = read_index(f)
                names = parts(self.index)

                def fetch():
                    try:
                        for p in names:
                            chunks[p] = (f.read_at(self.index.parts[p][0], self.index.part_bytes(p)),
                                         self.index.parts[p][0])
                    except BaseException as e:  # noqa: BLE001  (raised on the caller's thread below)
                        errors.append(e)
                if self.factory is None:
                    self.factory = skeleton_factory(self.index.meta)
                overlap = overlaps_first_read(sum(self.index.part_bytes(p) for p in names), self.reader.bucket.rate)
                reading = threading.Thread(target=fetch, name="pwl-first-read", daemon=True)
                if overlap:
                    reading.start()
                else:
                    fetch()
                try:
                    ts = time.perf_counter()
                    skeleton = self.factory(role)
                    skeleton_s = time.perf_counter() - ts
                    if overlap and spare is not None and reading.is_alive():
                        spare(skeleton)
                finally:
                    if overlap:
                        reading.join()
                if errors:
                    raise errors[0]
        except OSError as e:
            raise PWLError(f"cannot read {self.path} ({e})", EXPORT_FIX) from None
        cost = {"read_s": time.perf_counter() - t, "skeleton_s": skeleton_s}
        self._event("read", None, file="header+" + "+".join(names), **cost)
        return chunks, cost, skeleton

    def _request_parts(self, parts: list[str]) -> tuple:
        """One request for `parts` (contiguous in the pack), verified: (parts, bytes, their start, costs, error)."""
        t = time.perf_counter()
        label = "+".join(parts)
        self._event("read_start", self.state, file=label)
        try:
            lo, hi = self.index.span(parts)
            with self.reader.open(self.path) as f:
                buf = f.read_at(lo, hi - lo)
            cost = {"read_s": time.perf_counter() - t}
            self._event("read", self.state, file=label, read_s=cost["read_s"])
            self._verify({p: (buf, lo) for p in parts}, cost)
        except (OSError, PWLError) as e:
            err = e if isinstance(e, PWLError) else PWLError(f"cannot read {label} from {self.path} ({e})", EXPORT_FIX)
            return parts, None, 0, None, err
        return parts, buf, lo, cost, None

    def _verify(self, chunks: dict, cost: dict) -> None:
        """Check the parts in `chunks` ({part: (bytes, file offset)}) against their sha256; adds the seconds to
        `cost`."""
        t = time.perf_counter()
        for name, (buf, start) in chunks.items():
            self.index.verify(name, buf, start)
        cost["verify_s"] = time.perf_counter() - t

    def _deserialize(self, chunks: dict, cost: dict) -> dict:
        """The tensors of the (verified) parts in `chunks`; adds the seconds to `cost`."""
        t = time.perf_counter()
        out = {}
        for name, (buf, start) in chunks.items():
            out.update(self.index.tensors_of(name, buf, start))
        cost["deserialize_s"] = time.perf_counter() - t
        return out
