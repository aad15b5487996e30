#!/usr/bin/env python3
"""Generates the postgres_upsert benchmark data (deterministic, streamed to disk row by row):

  base.csv    1,000,000 rows, ids 1..1,000,000: what the table holds before the import
  import.csv  1,000,000 rows: 500,000 updates (ids 500,001..1,000,000, changed values)
              interleaved with 500,000 new keys (ids 1,000,001..1,500,000)
  naive.sql   import.csv as 1,000-row multi-VALUES INSERT … ON CONFLICT statements

10 columns: id, name, email, age, score, active, city, signup, last_seen, note.

    python3 bench/upsert/gen_data.py OUT_DIR [ROWS]
"""
import csv
import os
import random
import sys

CITIES = ["Paris", "Lyon", "Berlin", "München", "Kraków", "Zürich", "Tokyo", "São Paulo", "Oslo", "Lisbon"]
COLS = ["id", "name", "email", "age", "score", "active", "city", "signup", "last_seen", "note"]


def row(rng, i, version):
    return [
        i,
        f"Customer {i} v{version}",
        f"user{i}.v{version}@example.com",
        18 + (i * 7 + version) % 70,
        f"{rng.randint(0, 10_000_000) / 100:.2f}",
        "true" if (i + version) % 3 else "false",
        CITIES[(i + version) % len(CITIES)],
        f"20{10 + i % 14:02d}-{1 + i % 12:02d}-{1 + i % 28:02d}",
        f"2024-{1 + (i + version) % 12:02d}-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{(i * 13) % 60:02d}+00",
        f"note {version}, with a comma" if i % 10 == 0 else f"plain note {version}",
    ]


def sql_value(v):
    if isinstance(v, int):
        return str(v)
    return "'" + str(v).replace("'", "''") + "'"


def main():
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    half = n // 2
    os.makedirs(out, exist_ok=True)
    rng = random.Random(42)
    with open(os.path.join(out, "base.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLS)
        for i in range(1, n + 1):
            w.writerow(row(rng, i, 1))
    set_clause = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLS[1:])
    with open(os.path.join(out, "import.csv"), "w", newline="", encoding="utf-8") as f, open(
        os.path.join(out, "naive.sql"), "w", encoding="utf-8"
    ) as s:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLS)
        batch = []

        def flush():
            s.write(f"INSERT INTO bench ({', '.join(COLS)}) VALUES\n")
            s.write(",\n".join("(" + ", ".join(sql_value(v) for v in r) + ")" for r in batch))
            s.write(f"\nON CONFLICT (id) DO UPDATE SET {set_clause};\n")
            batch.clear()

        for k in range(half):
            for r in (row(rng, n - half + 1 + k, 2), row(rng, n + 1 + k, 2)):
                w.writerow(r)
                batch.append(r)
                if len(batch) == 1000:
                    flush()
        if batch:
            flush()


if __name__ == "__main__":
    main()
