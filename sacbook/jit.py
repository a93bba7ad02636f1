"""How sacbook compiles its programs: ``jax.jit`` with one set of XLA options.

On a CPU two XLA options make a cold start faster. Measured on a 2-core CPU
compiling the default training chunk: without the fusion emitters the code
compiles about 30% faster (2.7 s -> 2.1 s) and runs about 10% slower; LLVM's
-O1 instead of -O2 then saves another 0.4 s with no measurable loss of speed.
A run of a few hundred thousand environment steps is mostly compiling, so the
package compiles with both on a CPU, and with XLA's defaults elsewhere. A
program that runs long and whose compile time nobody waits for (the
simulation benchmark, a plain ``lax.scan`` of env steps, runs 25-40% faster
with XLA's defaults on a 2-core CPU) says so with ``fast_compile=False``.

Every compiled entry point of the package (the training chunk, the SAC
update, evaluation, rollouts, a checkpoint's policy, the simulation
benchmark) is a :class:`Program`, so training, the CLI, the benchmarks and
a resumed run all run the same machine code: one seed gives one result,
bit for bit, whatever the entry point.
"""

from __future__ import annotations

import functools

import jax

CPU_FAST_COMPILE_OPTIONS = {
    "xla_cpu_use_fusion_emitters": False,
    "xla_backend_optimization_level": 1,
}


def compiler_options(backend: str | None = None, fast_compile: bool = True) -> dict:
    """The XLA options sacbook compiles with on ``backend`` (default: JAX's):
    :data:`CPU_FAST_COMPILE_OPTIONS` on a CPU (unless ``fast_compile`` is
    False), less any that this version of XLA no longer knows (jax 0.11
    dropped the fusion-emitter switch)."""
    backend = backend or jax.default_backend()
    if backend != "cpu" or not fast_compile:
        return {}
    return dict(_supported(tuple(CPU_FAST_COMPILE_OPTIONS.items())))


@functools.cache
def _supported(options: tuple) -> tuple:
    """``options`` less those XLA refuses, found by compiling a one-op
    program (a few milliseconds, once per process)."""
    options = dict(options)
    while options:
        try:
            jax.jit(lambda x: x + 1, compiler_options=options).lower(0.0).compile()
            break
        except Exception as err:  # XLA names the option it does not know
            unknown = [name for name in options if f"'{name}'" in str(err)]
            if "No such compile option" not in str(err) or not unknown:
                raise
            del options[unknown[0]]
    return tuple(options.items())


class Program:
    """``jax.jit(fun, **jit_kwargs)`` compiled with :func:`compiler_options`
    (``fast_compile``: see the module docstring).

    Called at the top level, it runs the compiled program (one per backend,
    each with its own cache of compilations). Called inside another traced
    function, it is inlined as ``fun`` is: JAX accepts compiler options only
    on the outermost ``jit``.
    """

    def __init__(self, fun, *, fast_compile: bool = True, **jit_kwargs):
        self.fun = fun
        self.fast_compile = fast_compile
        self.jit_kwargs = jit_kwargs
        self._by_backend: dict[str, object] = {}
        functools.update_wrapper(self, fun)

    def jitted(self):
        """The ``jax.jit`` of ``fun`` for the default backend."""
        backend = jax.default_backend()
        if backend not in self._by_backend:
            self._by_backend[backend] = jax.jit(
                self.fun,
                compiler_options=compiler_options(backend, self.fast_compile),
                **self.jit_kwargs,
            )
        return self._by_backend[backend]

    def __call__(self, *args, **kwargs):
        if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((args, kwargs))):
            return self.fun(*args, **kwargs)
        return self.jitted()(*args, **kwargs)

    def lower(self, *args, **kwargs):
        """Lower for ahead-of-time compilation (``.compile()`` keeps the options)."""
        return self.jitted().lower(*args, **kwargs)

    def cache_size(self) -> int:
        """How many programs have been compiled so far, all backends together."""
        return sum(j._cache_size() for j in self._by_backend.values())


def keep_compiled_programs(folder) -> None:
    """Keep every program this process compiles from now on in ``folder``
    (JAX's persistent compilation cache), and look there before compiling:
    a second process with the same settings starts without compiling. Only
    programs that took 0.1 s or more to compile are kept."""
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)


def program(fun=None, **jit_kwargs):
    """Decorator form of :class:`Program`: ``@program(static_argnums=...)``."""
    if fun is None:
        return functools.partial(program, **jit_kwargs)
    return Program(fun, **jit_kwargs)
