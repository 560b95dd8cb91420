"""Render throughput: the persistent PlantUML server against one JVM per diagram, and a cache hit.

    .venv/bin/python bench/render_throughput.py [N]

Renders the first N (default 40) PlantUCD rows of data/plantucd as SVG both ways (no cache), then
times cache hits from the in-process dict and from the DuckDB store. Uses a throwaway runs root.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ["UMLSTUDIO_HOME"] = tempfile.mkdtemp(prefix="render-bench-")

from core import paths, render


def diagrams(n: int) -> list[str]:
    with (paths.DATA_DIR / "plantucd" / "plantucd.jsonl").open() as rows:
        return [f"@startuml\n{json.loads(line)['PlantUML']}\n@enduml" for line, _ in zip(rows, range(n))]


def one_jvm_each(sources: list[str]) -> float:
    started = time.perf_counter()
    for source in sources:
        block = render._block(source, render._smetana())
        out = subprocess.run(render._command("-tsvg", "-pipe"), input=block.text.encode(), capture_output=True)
        assert out.stdout.lstrip().startswith(b"<svg"), out.stderr[:300]
    return time.perf_counter() - started


def persistent(renderer: render.Renderer, sources: list[str], threads: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda s: renderer.render(s), sources))
    elapsed = time.perf_counter() - started
    assert all(r.status in ("ok", "error") for r in results)
    return elapsed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    sources = diagrams(n)
    print(
        f"PlantUML {render.plantuml_version()}, {n} PlantUCD diagrams, layout "
        f"{'smetana' if render._smetana() else 'graphviz'}, {os.cpu_count()} CPUs"
    )

    renderer = render.Renderer()
    started = time.perf_counter()
    renderer.render("@startuml\na -> b\n@enduml")
    print(f"server start (once):        {time.perf_counter() - started:6.2f} s")
    persistent(renderer, sources, 1)  # warm the JIT on these diagrams once
    serial = persistent(renderer, sources, 1)
    parallel = persistent(renderer, sources, render.MAX_PARALLEL)
    renderer.close()
    baseline = one_jvm_each(sources)
    print(f"one JVM per diagram:        {n / baseline:6.1f} diagrams/s")
    print(f"persistent server, 1 thread:{n / serial:6.1f} diagrams/s  ({baseline / serial:.1f}x)")
    print(
        f"persistent server, {render.MAX_PARALLEL} threads:{n / parallel:5.1f} diagrams/s  ({baseline / parallel:.1f}x)"
    )

    source = sources[0]
    render.render(source)
    hits = []
    for _ in range(200):
        started = time.perf_counter()
        assert render.render(source).cached
        hits.append(time.perf_counter() - started)
    hits.sort()
    print(f"cache hit, in-process:      median {hits[100] * 1e6:6.1f} us, max {hits[-1] * 1e6:6.1f} us")
    store_hits = []
    for _ in range(10):
        render.clear_memory_cache()
        started = time.perf_counter()
        assert render.render(source).cached
        store_hits.append(time.perf_counter() - started)
    store_hits.sort()
    print(f"cache hit, DuckDB store:    median {store_hits[5] * 1e3:6.1f} ms")
    render.renderer().close()


if __name__ == "__main__":
    main()
