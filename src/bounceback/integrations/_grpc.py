"""gRPC client interceptors that run each unary call under a policy, for sync and asyncio channels.

    channel = grpc.intercept_channel(grpc.insecure_channel(target), RecoveringInterceptor(attempts=4))
    channel = grpc.aio.insecure_channel(target, interceptors=[AsyncRecoveringInterceptor(attempts=4)])

Each call's errors are classified by the gRPC error pack (``UNAVAILABLE``, ``DEADLINE_EXCEEDED`` retried;
``RESOURCE_EXHAUSTED`` throttled, honouring ``grpc-retry-pushback-ms``; ``INVALID_ARGUMENT``,
``PERMISSION_DENIED`` ... not retried), calls pass one circuit breaker per channel, and when recovery gives
up the last ``RpcError`` is raised as grpc raised it, carrying the method and target for the guidance.
gRPC does not say which methods are idempotent: list the ones that must run at most once in ``no_retry``.
Give each call a ``timeout``: it bounds each attempt.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import grpc

from bounceback.core.classify._rules import DEFAULT_CLASSIFIER, Classifier
from bounceback.errors import ConfigError

__all__ = ["AsyncRecoveringInterceptor", "RecoveringInterceptor"]


def _label(exc: BaseException, method: str, target: str | None) -> None:
    # The error carries the call it came from, so the ticket's guidance can name it.
    try:
        exc.bounceback_rpc = method  # type: ignore[attr-defined]
        if target is not None:
            exc.bounceback_target = target  # type: ignore[attr-defined]
    except AttributeError:
        pass


class _Policies:
    """The policies of one channel: retried and at-most-once twins, sharing the channel's breaker."""

    def __init__(
        self,
        operation: str,
        target: str | None,
        breakers: bool | Callable[[str], Any],
        no_retry: Iterable[str],
        classifier: Classifier,
        options: dict[str, Any],
    ) -> None:
        from bounceback.core.policy._policy import Policy

        if "fallback" in options:
            raise ConfigError("fallback", options["fallback"], "no fallback: a gRPC call returns or raises")
        self.operation = operation
        self.target = target
        self.no_retry = frozenset(no_retry)
        name = f"grpc:{target or operation}"
        breaker: Any = None
        if breakers is True:
            from bounceback.core.breaker._breaker import CircuitBreaker

            kwargs = {k: options[k] for k in ("clock", "bus") if options.get(k) is not None}
            breaker = CircuitBreaker(name, **kwargs)
        elif callable(breakers):
            breaker = breakers(name)
        elif breakers is not False:
            raise ConfigError("breakers", breakers, "True, False, or a function name -> breaker")
        self.breaker = breaker
        self._lock = threading.Lock()
        self._policy_cls = Policy
        self._classifier = classifier
        self._options = options
        self._policies: dict[bool, Any] = {}

    def _make(self, retry: bool) -> Any:
        options = self._options if retry else {**self._options, "attempts": 1}
        return self._policy_cls(self.operation, breaker=self.breaker, classifier=self._classifier, **options)

    def get(self, method: str) -> Any:
        retry = method not in self.no_retry
        policy = self._policies.get(retry)
        if policy is None:
            with self._lock:
                policy = self._policies.get(retry)
                if policy is None:
                    policy = self._policies[retry] = self._make(retry)
        return policy


def _method(details: Any) -> str:
    method = details.method
    return method.decode() if isinstance(method, bytes) else str(method)


class RecoveringInterceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """A sync gRPC interceptor running each unary-unary call under a policy.

    Keyword arguments not listed are :class:`bounceback.Policy` arguments (``attempts``, ``deadline``,
    ``backoff``, ``max_retry_after``, ``settings``, ``clock``, ``bus`` ...). ``target`` names the server
    (for the breaker and the guidance); ``breakers`` is True (one ``CircuitBreaker`` for the channel),
    False, or a factory ``name -> breaker``; ``no_retry`` the full method names (``/pkg.Service/Method``)
    called at most once.

    >>> interceptor = RecoveringInterceptor(attempts=3, target="127.0.0.1:50051")
    >>> channel = grpc.intercept_channel(grpc.insecure_channel("127.0.0.1:50051"), interceptor)
    >>> channel.close()
    """

    def __init__(
        self,
        *,
        operation: str = "grpc",
        target: str | None = None,
        breakers: bool | Callable[[str], Any] = True,
        no_retry: Iterable[str] = (),
        classifier: Classifier = DEFAULT_CLASSIFIER,
        **policy_options: Any,
    ) -> None:
        self.policies = _Policies(operation, target, breakers, no_retry, classifier, policy_options)

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        """Make the call under the policy; raise the last ``RpcError`` when recovery gives up."""
        method = _method(client_call_details)
        target = self.policies.target

        def attempt() -> Any:
            call = continuation(client_call_details, request)
            try:
                call.result()  # a failed call raises its RpcError here, inside the attempt
            except grpc.RpcError as exc:
                _label(exc, method, target)
                raise
            return call

        return self.policies.get(method).call(attempt)


class AsyncRecoveringInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """The asyncio twin of :class:`RecoveringInterceptor` (same arguments), for ``grpc.aio`` channels."""

    def __init__(
        self,
        *,
        operation: str = "grpc",
        target: str | None = None,
        breakers: bool | Callable[[str], Any] = True,
        no_retry: Iterable[str] = (),
        classifier: Classifier = DEFAULT_CLASSIFIER,
        **policy_options: Any,
    ) -> None:
        self.policies = _Policies(operation, target, breakers, no_retry, classifier, policy_options)

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        """Make the call under the policy; return its response, or raise the last ``AioRpcError``."""
        method = _method(client_call_details)
        target = self.policies.target

        async def attempt() -> Any:
            call = await continuation(client_call_details, request)
            try:
                return await call
            except grpc.RpcError as exc:
                _label(exc, method, target)
                raise

        return await self.policies.get(method).acall(attempt)
