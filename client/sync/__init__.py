"""``dbx sync``: keep a local folder and a folder of the user's tree the same, both ways.

How it is built (each module's docstring says more):

- **Three trees.** The *remote* tree as last read from the change journal
  (remote.py follows its cursor), the *local* tree as last scanned (scan.py), and
  the *synced* tree: the last state both sides agreed on. All three live in one
  small SQLite database outside the synced folder (index.py). A change is what
  differs from the synced tree on one side.
- **Persist observations, not work.** No queue of pending operations is ever
  stored: after a crash the planner derives the work again from the three
  trees. Each operation the executor carries out updates the synced tree in the
  same transaction that records it done (apply.py), so a client killed at any
  moment starts again, converges, and does nothing twice.
- **A pure planner.** plan.py takes the three trees and gives operations,
  with no I/O at all: it is what the property tests exercise.
- **One thread decides.** Planning and bookkeeping run on one event loop;
  transfers and hashing are awaited there, so a seeded simulation replays
  the same run exactly.
- **Identity.** Remote ids survive renames and moves, local files are followed
  by inode: a renamed large file is a rename on the other side, not a transfer.
- **Conflicts and safety valves** are stated in plan.py: edits are never lost
  to deletions or to other edits, and a pass that would delete more than half
  of either side stops unless allowed.
"""
