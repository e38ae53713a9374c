"""The user's data files for the command line: CSV (a header row), ``.npy`` and ``.npz``
read into float64 features and raw targets, and the targets turned into what a network trains
on (the task inferred, class labels encoded as 0..K-1). Every problem with a file is a
:class:`DataError` whose message says what and where; the CLI prints it as one line."""

from __future__ import annotations

import csv
import os

import numpy as np

#: Integer-valued targets with at most this many distinct values are classes under --task auto.
MAX_AUTO_CLASSES = 20
#: The most classes a classification target may have (a softmax output per class).
MAX_CLASSES = 1000


class DataError(ValueError):
    """A data file that cannot be used, or an option that does not fit it."""


class Table:
    """A CSV file's header and cells (strings), with the file's line number of each row."""

    def __init__(self, path: str):
        self.path = path
        delimiter = "\t" if path.lower().endswith(".tsv") else ","
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:
                reader = csv.reader(f, delimiter=delimiter)
                header = next(reader, None)
                self.rows, self.lines = [], []
                for row in reader:
                    if not any(cell.strip() for cell in row):
                        continue  # blank lines
                    if header is not None and len(row) != len(header):
                        raise DataError(f"{path}, line {reader.line_num}: {len(row)} fields, but the header has "
                                       f"{len(header)}")
                    self.rows.append(row)
                    self.lines.append(reader.line_num)
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
        except (UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"cannot read {path} as CSV: {exc}") from None
        if header is None or not any(cell.strip() for cell in header):
            raise DataError(f"{path} is empty: expected a header row of column names")
        self.columns = [cell.strip() for cell in header]
        repeated = sorted({c for c in self.columns if self.columns.count(c) > 1})
        if repeated:
            raise DataError(f"{path}: the header repeats the column names {', '.join(map(repr, repeated))}")
        if not self.rows:
            raise DataError(f"{path} has a header but no data rows")

    def listing(self) -> str:
        return ", ".join(self.columns)

    def index(self, name: str) -> int:
        if name not in self.columns:
            raise DataError(f"{self.path} has no column {name!r}; its columns: {self.listing()}")
        return self.columns.index(name)

    def strings(self, name: str) -> list[str]:
        j = self.index(name)
        return [row[j].strip() for row in self.rows]

    def numbers(self, name: str) -> np.ndarray:
        out = np.empty(len(self.rows), dtype=np.float64)
        for i, (value, line) in enumerate(zip(self.strings(name), self.lines)):
            try:
                out[i] = float(value)
            except ValueError:
                what = "an empty cell (missing values are not supported)" if value == "" else repr(value)
                raise DataError(f"{self.path}: column {name!r} must be numeric to be a feature, but line {line} has "
                               f"{what}") from None
        return out

    def features(self, names: list[str]) -> np.ndarray:
        if not names:
            raise DataError(f"{self.path} has no feature columns besides the target")
        return np.column_stack([self.numbers(name) for name in names])

    def target(self, name: str) -> np.ndarray:
        """The column as float64 when every cell is a number, else as text (class labels)."""
        values = self.strings(name)
        try:
            return np.array([float(v) for v in values], dtype=np.float64)
        except ValueError:
            if "" in values:
                line = self.lines[values.index("")]
                raise DataError(f"{self.path}: the target column {name!r} has an empty cell at line {line}") from None
            return np.array(values, dtype=str)


def file_kind(path: str) -> str:
    suffix = os.path.splitext(path)[1].lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".npy", ".npz"):
        return suffix[1:]
    raise DataError(f"cannot read {path}: unknown file type {suffix or '(none)'!r}; use .csv, .tsv, .npy or .npz")


def load_numpy(path: str):
    try:
        with open(path, "rb") as f:
            start = f.read(6)
        if not start.startswith(b"PK") and start != b"\x93NUMPY":
            raise DataError(f"cannot read {path}: not a NumPy .npy or .npz file")
        return np.load(path, allow_pickle=False)
    except DataError:
        raise
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # a damaged or foreign file: zip, pickle or header errors
        raise DataError(f"cannot read {path} as {os.path.splitext(path)[1]}: {exc}") from None


def npz_arrays(path: str) -> dict:
    archive = load_numpy(path)
    if isinstance(archive, np.ndarray):
        raise DataError(f"{path} holds a single .npy array, not an .npz archive of arrays X and y")
    with archive:
        try:
            return {name: archive[name] for name in archive.files}
        except Exception as exc:
            raise DataError(f"cannot read {path} as .npz: {exc}") from None


def npy_array(path: str) -> np.ndarray:
    a = load_numpy(path)
    if not isinstance(a, np.ndarray):
        a.close()
        raise DataError(f"{path} is an .npz archive, not a single .npy array")
    if a.ndim != 2 or a.dtype.kind not in "biuf":
        raise DataError(f"{path} must hold a numeric 2-D array (rows of features and target), got "
                       f"{a.dtype} with shape {a.shape}")
    return a


def column_index(path: str, target: str, width: int) -> int:
    try:
        j = int(target)
    except ValueError:
        raise DataError(f"--target for a .npy file is a column index (0 to {width - 1}, or -1 for the last), got "
                       f"{target!r}") from None
    if not -width <= j < width:
        raise DataError(f"--target {j} is out of range: {path} has {width} columns (indices 0 to {width - 1}, or "
                       f"-1 for the last)")
    return j % width


def as_features(path: str, X) -> np.ndarray:
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise DataError(f"{path}: the features must be numbers, got dtype {X.dtype}")
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{path}: the features must be a 2-D array with rows and columns, got shape {X.shape}")
    return X.astype(np.float64)


def read_training_data(path: str, target: str | None):
    """``(X, y, features, target)`` of a data file: float64 features, the raw targets, the
    feature names (CSV only, else None) and the target's name or index."""
    kind = file_kind(path)
    if kind == "csv":
        table = Table(path)
        if target is None:
            raise DataError(f"--data {path} needs --target COLUMN, the column to predict; its columns: "
                           f"{table.listing()}")
        table.index(target)
        features = [c for c in table.columns if c != target]
        return table.features(features), table.target(target), features, target
    if kind == "npz":
        arrays = npz_arrays(path)
        name = "y" if target is None else target
        for needed in ("X", name):
            if needed not in arrays:
                raise DataError(f"{path} has no array {needed!r}; its arrays: {', '.join(arrays) or '(none)'}"
                               + (" (X: the features, y: the target)" if target is None else ""))
        return as_features(path, arrays["X"]), arrays[name], None, name
    a = npy_array(path)
    if target is None:
        raise DataError(f"--data {path} needs --target INDEX, the column that holds the target (-1: the last); a "
                       f".npy file holds one array of {a.shape[1]} columns")
    j = column_index(path, target, a.shape[1])
    return as_features(path, np.delete(a, j, axis=1)), a[:, j], None, j



def label_value(value):
    """A class label as JSON can hold it: integral numbers as int, text as str."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def encode_targets(path: str, target, y: np.ndarray, task: str):
    """``(task, y for fit, classes or None)`` from the raw targets."""
    y = np.asarray(y)
    text = y.dtype.kind in "USO"
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim not in (1, 2) or y.size == 0:
        raise DataError(f"{path}: the target must be one value per row (1-D), got shape {y.shape}")
    if y.dtype.kind == "O":
        raise DataError(f"{path}: the target holds Python objects; use numbers or text")
    if not text and y.dtype.kind not in "biuf":
        raise DataError(f"{path}: the target must hold numbers or text labels, got dtype {y.dtype}")
    if not text and not np.isfinite(y.astype(np.float64)).all():
        raise DataError(f"{path}: the target {target!r} contains NaN or infinity")
    if task == "auto":
        if y.ndim == 2:
            task = "regression"
        elif text or y.dtype.kind == "b":
            task = "classification"
        else:
            integral = bool(np.all(np.mod(y, 1) == 0))
            task = "classification" if integral and len(np.unique(y)) <= MAX_AUTO_CLASSES else "regression"
    if task == "regression":
        if text:
            example = next(v for v in y.ravel() if not is_number(v))
            raise DataError(f"{path}: regression needs a numeric target, but {target!r} holds text such as "
                           f"{str(example)!r}; use --task classification")
        return task, y.astype(np.float64), None
    if y.ndim == 2:
        raise DataError(f"{path}: classification needs one label per row, but the target has shape {y.shape}")
    classes, codes = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise DataError(f"{path}: the target {target!r} has a single value ({label_value(classes[0])!r}); "
                       "classification needs at least 2 classes")
    if len(classes) > MAX_CLASSES:
        raise DataError(f"{path}: the target {target!r} has {len(classes)} distinct values, over the {MAX_CLASSES} "
                       "classes allowed; use --task regression if it is a quantity")
    return task, codes.reshape(-1).astype(np.int64), [label_value(c) for c in classes]


def is_number(text) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
