"""A recording stand-in for the ``tensorrt`` Python module, shaped like the 10.0, 10.1-10.8,
10.9+ and 11.x bindings where this toolkit's calls differ between them, so that the build and
run sequences are exercised on machines without TensorRT or a GPU.

What differs by version (from NVIDIA's API references and migration guides):
* ``HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY``: 10.9 and newer.
* ``BuilderFlag.FP16``: 10.x only (11 removed weak typing).
* ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH``: 10.x only.
* ``ICudaEngine.device_memory_size``: up to 10.x (removed in 11); ``device_memory_size_v2``,
  ``IExecutionContext.set_device_memory`` and ``update_device_memory_size_for_shapes``: 10.1+.

Behaviour switches (keyword arguments of :func:`make_tensorrt`) reproduce the failure modes the
toolkit must survive: ``create_timing_cache`` returning None, ``get_timing_cache`` returning None,
``create_execution_context`` returning None. The fake "engine" upsamples by nearest neighbour,
reading and writing the buffers at the addresses it is given (host memory in these tests).
"""

from __future__ import annotations

import ctypes
import enum
import json
import types

import numpy as np

PLAN_MAGIC = b"FAKEPLAN"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:3])


def make_tensorrt(version: str = "10.9.0", *, scale: int = 2, timing_cache_none: bool = False,
                  lose_timing_cache: bool = False, context_none: bool = False,
                  build_fails: bool = False) -> types.ModuleType:
    """A fresh fake ``tensorrt`` module; ``module.calls`` records what was called, in order."""
    v = _version(version)
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    calls: list[tuple] = []
    trt.calls = calls
    trt.warnings = []  # what real TensorRT would print through its logger
    trt.loggers = []
    first_logger: list = []

    def note_logger(logger) -> None:
        if first_logger and logger is not first_logger[0]:
            trt.warnings.append("logger passed differs from the one already registered")
        first_logger[:1] = first_logger[:1] or [logger]

    class Logger:
        WARNING = 2

        def __init__(self, severity: int = 2) -> None:
            trt.loggers.append(self)

    flags = {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1} if v < (11,) else {"STRONGLY_TYPED": 1}
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", flags)
    builder_flags = ["TF32", "VERSION_COMPATIBLE", "DIRECT_IO"]
    if v < (11,):
        builder_flags += ["FP16", "BF16", "INT8", "OBEY_PRECISION_CONSTRAINTS"]
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", builder_flags)
    levels = ["NONE", "AMPERE_PLUS"] + (["SAME_COMPUTE_CAPABILITY"] if v >= (10, 9) else [])
    trt.HardwareCompatibilityLevel = enum.IntEnum("HardwareCompatibilityLevel", levels)
    trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", ["WORKSPACE"])
    trt.TensorIOMode = enum.IntEnum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"])
    trt.ExecutionContextAllocationStrategy = enum.IntEnum(
        "ExecutionContextAllocationStrategy", ["STATIC", "ON_PROFILE_CHANGE", "USER_MANAGED"])
    dtypes = enum.IntEnum("DataType", ["FLOAT", "HALF", "BF16"])
    trt.float32, trt.float16, trt.bfloat16 = dtypes.FLOAT, dtypes.HALF, dtypes.BF16
    trt.Logger = Logger
    o = types.SimpleNamespace(version=version, v=v, scale=scale, note_logger=note_logger,
                              timing_cache_none=timing_cache_none,
                              lose_timing_cache=lose_timing_cache, context_none=context_none,
                              build_fails=build_fails)
    _builder_api(trt, o)
    _runtime_api(trt, o)
    return trt


def _config_classes(trt: types.ModuleType, o: types.SimpleNamespace) -> tuple[type, type]:
    """The optimization profile and the builder config (timing caches included)."""
    calls, version = trt.calls, o.version
    timing_cache_none, lose_timing_cache = o.timing_cache_none, o.lose_timing_cache

    class TimingCache:
        def __init__(self, owner: str, entries: int) -> None:
            self.owner, self.entries = owner, entries

        def serialize(self) -> bytes:
            return f"TC:{self.owner}:{self.entries}".encode()

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple] = {}

        def set_shape(self, name, lo, opt, hi) -> None:
            calls.append(("profile.set_shape", name, tuple(lo), tuple(opt), tuple(hi)))
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class Config:
        def __init__(self) -> None:
            self.flags = {trt.BuilderFlag.TF32}  # TensorRT's default: TF32 allowed
            self.cache = None
            self.profiles: list[Profile] = []
            self.builder_optimization_level = 3
            self.hardware_compatibility_level = trt.HardwareCompatibilityLevel.NONE

        def set_memory_pool_limit(self, pool, size) -> None:
            calls.append(("config.set_memory_pool_limit", pool, size))

        def set_flag(self, flag) -> None:
            calls.append(("config.set_flag", flag.name))
            self.flags.add(flag)

        def clear_flag(self, flag) -> None:
            calls.append(("config.clear_flag", flag.name))
            self.flags.discard(flag)

        def get_flag(self, flag) -> bool:
            return flag in self.flags

        def create_timing_cache(self, blob: bytes):
            calls.append(("config.create_timing_cache", bytes(blob)))
            if timing_cache_none:
                return None
            if not blob:
                return TimingCache(version, 0)
            parts = bytes(blob).decode("latin-1").split(":")
            if len(parts) != 3 or parts[0] != "TC" or not parts[2].isdigit():
                return None  # a corrupt blob: TensorRT logs an error and returns nothing
            return TimingCache(parts[1], int(parts[2]))

        def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
            if cache is None:
                raise TypeError("set_timing_cache(): incompatible function arguments")
            calls.append(("config.set_timing_cache", cache.owner, ignore_mismatch))
            if cache.owner != version and not ignore_mismatch:
                return False
            self.cache = cache
            return True

        def get_timing_cache(self):
            if lose_timing_cache:
                return None
            return self.cache

        def add_optimization_profile(self, profile: Profile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

    return Profile, Config


def _builder_api(trt: types.ModuleType, o: types.SimpleNamespace) -> None:
    """Builder, OnnxParser and what building an engine touches."""
    calls, scale, note_logger, build_fails = trt.calls, o.scale, o.note_logger, o.build_fails

    Profile, Config = _config_classes(trt, o)

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags

    class Parser:
        def __init__(self, network, logger) -> None:
            note_logger(logger)
            self.num_errors = 0

        def parse_from_file(self, path: str) -> bool:
            calls.append(("parser.parse_from_file", path))
            return True

    class Builder:
        def __init__(self, logger) -> None:
            note_logger(logger)
            calls.append(("Builder",))

        def create_network(self, flags: int = 0) -> Network:
            calls.append(("builder.create_network", flags))
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network, config):
            calls.append(("builder.build_serialized_network",
                          sorted(f.name for f in config.flags),
                          config.hardware_compatibility_level.name))
            if build_fails:
                return None
            if config.cache is not None:
                config.cache.entries += 1
            (name, (lo, _, hi)), = config.profiles[0].shapes.items()
            meta = {"input": name, "min": lo, "max": hi, "scale": scale}
            return PLAN_MAGIC + json.dumps(meta).encode()

    trt.Builder, trt.OnnxParser = Builder, Parser


def _context_class(trt: types.ModuleType, o: types.SimpleNamespace) -> type:
    """An execution context: shapes, addresses, device memory by version, and the run."""
    calls, v = trt.calls, o.v

    class Context:
        def __init__(self, engine, strategy) -> None:
            self.engine, self.strategy = engine, strategy
            self.shape: tuple | None = None
            self.addresses: dict[str, int] = {}
            self.memory: tuple[int, int] | None = None

        def set_input_shape(self, name, shape) -> bool:
            calls.append(("context.set_input_shape", name, tuple(shape)))
            lo, hi = self.engine.meta["min"], self.engine.meta["max"]
            if len(shape) != 4 or any(not a <= s <= b
                                      for a, s, b in zip(lo, shape, hi, strict=True)):
                return False
            self.shape = tuple(shape)
            return True

        def get_tensor_shape(self, name) -> tuple:
            n, c, h, w = self.shape
            s = self.engine.meta["scale"]
            return (n, c, h * s, w * s) if name == "sr" else self.shape

        def need(self) -> int:
            n, _, h, w = self.shape
            return n * 64 * h * w * 4  # "activations": 64 float channels of the input size

        def set_tensor_address(self, name, ptr) -> None:
            self.addresses[name] = ptr

        def execute_async_v3(self, stream) -> bool:
            calls.append(("context.execute_async_v3", self.shape))
            user = self.strategy == trt.ExecutionContextAllocationStrategy.USER_MANAGED
            if user and (self.memory is None or self.memory[1] < self.need()):
                trt.warnings.append("execute without enough device memory")
                return False
            n, c, h, w = self.shape
            s = self.engine.meta["scale"]
            src = np.ctypeslib.as_array(
                (ctypes.c_float * (n * c * h * w)).from_address(self.addresses["lr"]))
            dst = np.ctypeslib.as_array(
                (ctypes.c_float * (n * c * h * w * s * s)).from_address(self.addresses["sr"]))
            up = src.reshape(n, c, h, w).repeat(s, axis=2).repeat(s, axis=3)
            dst[:] = up.reshape(-1)
            return True

    if v >= (10, 1):
        def update_size(self) -> int:
            return self.need()

        def set_device_memory(self, ptr, size) -> None:
            calls.append(("context.set_device_memory", size))
            self.memory = (ptr, size)

        Context.update_device_memory_size_for_shapes = update_size
        Context.set_device_memory = set_device_memory
    else:
        def set_memory(self, ptr) -> None:  # 10.0: the size is the engine's maximum
            calls.append(("context.device_memory", self.engine.max_memory))
            self.memory = (ptr, self.engine.max_memory)

        Context.device_memory = property(lambda self: self.memory, set_memory)

    return Context


def _runtime_api(trt: types.ModuleType, o: types.SimpleNamespace) -> None:
    """Runtime, the engine and its execution context (nearest-neighbour upsampling)."""
    calls, v, note_logger, context_none = trt.calls, o.v, o.note_logger, o.context_none

    Context = _context_class(trt, o)

    class Engine:
        num_io_tensors = 2

        def __init__(self, meta: dict) -> None:
            self.meta = meta
            n, _, h, w = meta["max"]
            self.max_memory = n * 64 * h * w * 4

        def get_tensor_name(self, i: int) -> str:
            return ("lr", "sr")[i]

        def get_tensor_mode(self, name: str):
            return trt.TensorIOMode.INPUT if name == "lr" else trt.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str):
            return trt.float32

        def create_execution_context(self, strategy=None):
            strategy = strategy or trt.ExecutionContextAllocationStrategy.STATIC
            calls.append(("engine.create_execution_context", strategy.name))
            return None if context_none else Context(self, strategy)

    if v < (11,):
        Engine.device_memory_size = property(lambda self: self.max_memory)
    if v >= (10, 1):
        Engine.device_memory_size_v2 = property(lambda self: self.max_memory)

    class Runtime:
        def __init__(self, logger) -> None:
            note_logger(logger)

        def deserialize_cuda_engine(self, blob: bytes):
            calls.append(("runtime.deserialize_cuda_engine",))
            if not bytes(blob).startswith(PLAN_MAGIC):
                return None
            return Engine(json.loads(bytes(blob)[len(PLAN_MAGIC):]))

    trt.Runtime = Runtime
