"""What goes wrong in a generated diagram, and how the engine fixes it: the loop guard, and the
repair of outputs PlantUML rejects.

**Loop guard.** Small models often repeat themselves until the token limit. A row is *looped* when
its completed lines (blank lines skipped, digits read as one symbol so `class Item7`, `class Item8`
count as the same line) end in

- the same line more than `SAME_LINE_LIMIT` times in a row, or
- a block of 2 to `MAX_BLOCK` lines more than `BLOCK_LIMIT` times in a row,

or when its unfinished line ends in the same 2-40 character piece (with a letter or digit in it)
`IN_LINE_LIMIT` times in a row. The limits leave a margin over every reference in the shipped data
(PlantUCD, US2SD, LATO and the default splits): there, a line repeats at most 4 times in a row, a
block of lines at most twice, and no piece of a line 4 times. The decoder asks `loop_in(text)`
after each token and stops the row at the first loop; the output keeps what was generated.

**Repair** (`Engine.generate(..., repair=True)`). Every output is checked with PlantUML (one
`-syntax` JVM for all of them). A rejected output gets, in order, until PlantUML accepts it (a
looped one, accepted or not, goes straight to the edits: a second attempt walks back into the loop):

1. *a second attempt from the last good line*: the model continues from the output's lines before
   the error line, taking its second-best token where its best one started the rejected line
   (greedy after that). The continuation is checked again.
2. *edits*: cut the copies of a loop, add a missing `@startuml`/`@enduml`, close open `{` blocks,
   then delete the line PlantUML names (the line before it when that is `@enduml`), up to
   `MAX_EDITS` deletions, never below `MIN_LINES` lines of content.

The raw output is always kept beside the repaired one, with one line per change (`Generation.repair`).
"""

import re
from dataclasses import dataclass

SAME_LINE_LIMIT = 6
MAX_BLOCK = 8
BLOCK_LIMIT = 3
IN_LINE_LIMIT = 8
MAX_EDITS = 6
MIN_LINES = 1  # content lines (between @startuml and @enduml) a repair must leave

_IN_LINE = re.compile(r"(.{2,40}?)\1{" + str(IN_LINE_LIMIT - 1) + ",}$")


def _norm(line: str) -> str:
    return re.sub(r"\d+", "#", line.strip())


def _content(text: str) -> list[str]:
    return [_norm(line) for line in text.split("\n") if line.strip()]


def _tail_loop(lines: list[str]) -> tuple[int, int] | None:
    """(period, copies) when `lines` end in a loop past the limits; None otherwise."""
    if len(lines) > SAME_LINE_LIMIT and len(set(lines[-SAME_LINE_LIMIT - 1 :])) == 1:
        copies = 1
        while copies < len(lines) and lines[-copies - 1] == lines[-1]:
            copies += 1
        return 1, copies
    for period in range(2, MAX_BLOCK + 1):
        span = period * (BLOCK_LIMIT + 1)
        if len(lines) < span:
            break
        tail = lines[-span:]
        if tail[:period] != tail[period : 2 * period] or len(set(tail[:period])) == 1:
            continue
        if all(tail[i] == tail[i - period] for i in range(period, span)):
            copies = BLOCK_LIMIT + 1
            while (
                len(lines) >= period * (copies + 1)
                and lines[-period * (copies + 1) : -period * copies] == tail[:period]
            ):
                copies += 1
            return period, copies
    return None


def loop_in(text: str, new_line: bool = True) -> str | None:
    """What loops at the end of `text` (the generation so far), in words; None when nothing does.

    `new_line` False: no line was completed since the last check of this text (which found no
    loop), so only its unfinished last line is looked at (the decoder asks after every token)."""
    at = text.rfind("\n")
    current = text[at + 1 :]
    found = _tail_loop(_content(text[:at])) if new_line and at >= 0 else None
    if found:
        period, copies = found
        what = "the same line" if period == 1 else f"a block of {period} lines"
        return f"{what} {copies} times in a row"
    piece = _IN_LINE.search(_norm(current)) if len(current) >= 2 * IN_LINE_LIMIT else None
    if piece and re.search(r"\w", piece.group(1)):
        return f"'{piece.group(1)[:40]}' {len(piece.group(0)) // len(piece.group(1))} times in one line"
    return None


# ---- edits ------------------------------------------------------------------------------------


@dataclass
class Edit:
    text: str
    change: str  # one line, for people


def unloop(text: str) -> Edit | None:
    """The text with the copies of a loop (at its end) cut to one; None when there is no loop."""
    lines = text.split("\n")
    if lines and not lines[-1].strip().startswith("@end"):
        # the unfinished last line of a looped row: drop it when it repeats within itself
        piece = _IN_LINE.search(_norm(lines[-1]))
        if piece and re.search(r"\w", piece.group(1)):
            return Edit("\n".join(lines[:-1]), f"dropped the last line, which repeats '{piece.group(1)[:40]}'")
    body = [i for i, line in enumerate(lines) if line.strip() and not line.strip().startswith("@end")]
    found = _tail_loop([_norm(lines[i]) for i in body])
    if not found:
        return None
    period, copies = found
    first_cut = body[len(body) - period * (copies - 1)]
    last = body[-1]
    kept = lines[:first_cut] + lines[last + 1 :]
    what = "line" if period == 1 else f"{period}-line block"
    return Edit("\n".join(kept), f"cut {copies - 1} repeated copies of a {what} (lines {first_cut + 1}-{last + 1})")


def close(text: str) -> Edit | None:
    """The text with a missing @startuml / @enduml added and open `{` blocks closed; None when
    nothing is missing."""
    lines = text.rstrip().split("\n")
    changes = []
    if not any(line.strip().startswith("@start") for line in lines):
        lines.insert(0, "@startuml")
        changes.append("added @startuml")
    end = next((i for i, line in enumerate(lines) if line.strip().startswith("@end")), None)
    body = lines[:end] if end is not None else lines
    depth = sum(line.count("{") - line.count("}") for line in body)
    if depth > 0:
        body = body + ["}"] * depth
        changes.append(f"closed {depth} open {{ block{'s' if depth > 1 else ''}")
    if end is None:
        body = body + ["@enduml"]
        changes.append("added @enduml")
    if not changes:
        return None
    return Edit("\n".join(body + (lines[end:] if end is not None else [])), ", ".join(changes))


def delete_line(text: str, error_line: int | None) -> Edit | None:
    """The text without the line PlantUML rejects (1-based; the line before it when that is
    @enduml); None when there is nothing left to delete."""
    lines = text.split("\n")
    if error_line is None or not 1 <= error_line <= len(lines):
        return None
    at = error_line - 1
    if lines[at].strip().startswith("@end"):
        at -= 1
    content = [i for i, line in enumerate(lines) if line.strip() and not line.strip().startswith(("@start", "@end"))]
    if at < 0 or at not in content or len(content) <= MIN_LINES:
        return None
    return Edit("\n".join(lines[:at] + lines[at + 1 :]), f"deleted line {at + 1}: {lines[at].strip()[:80]}")


def prefix_before(text: str, error_line: int | None) -> str | None:
    """The output's lines before the rejected one (ending in a newline): where a second attempt
    starts. None when the error is on the first line or has no line."""
    if error_line is None or error_line < 2:
        return None
    lines = text.split("\n")
    if error_line > len(lines):
        return None
    return "\n".join(lines[: error_line - 1]) + "\n"
