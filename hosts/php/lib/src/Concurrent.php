<?php

declare(strict_types=1);

namespace ScimProvisioner;

use ScimProvisioner\Internal\Call;

/**
 * Keeps several connectors' calls in flight at once in one PHP process. Each connector is
 * its own component instance; whenever one's call waits for an HTTP request, the request
 * joins a curl_multi set, and the call resumes as soon as its answer arrives. Nothing blocks
 * inside native code: the bridge suspends each call and hands its request back as data.
 *
 * Connectors whose transport is a {@see CurlTransport} run concurrently; any other
 * transport is served in place (in turn). Each connector may appear once per run.
 *
 * ```php
 * $results = Concurrent::provisionBatches([[$connectorA, $itemsA], [$connectorB, $itemsB]]);
 * // one BatchOutcome, or the Throwable that call ended with, per job, in order
 * ```
 */
final class Concurrent
{
    /**
     * Runs each connector's provisionBatch at the same time.
     *
     * @param list<array{0: Connector, 1: list<BatchItem>}> $jobs
     * @return list<BatchOutcome|\Throwable>
     */
    public static function provisionBatches(array $jobs): array
    {
        return self::run(array_map(static fn (array $job): array => [
            $job[0],
            static fn (): Call => $job[0]->beginProvisionBatch($job[1]),
            static fn (Call $call): BatchOutcome => $job[0]->endProvisionBatch($call),
        ], $jobs));
    }

    /**
     * Runs each connector's provision at the same time.
     *
     * @param list<array{0: Connector, 1: CmsUser, 2: UserEvent|string, 3?: Link|null}> $jobs
     * @return list<ProvisionOutcome|\Throwable>
     */
    public static function provisions(array $jobs): array
    {
        return self::run(array_map(static fn (array $job): array => [
            $job[0],
            static fn (): Call => $job[0]->beginProvision($job[1], $job[2], $job[3] ?? null),
            static fn (Call $call): ProvisionOutcome => $job[0]->endProvision($call),
        ], $jobs));
    }

    /**
     * @param list<array{0: Connector, 1: callable(): Call, 2: callable(Call): mixed}> $jobs
     * @return list<mixed>
     */
    private static function run(array $jobs): array
    {
        $seen = [];
        foreach ($jobs as $i => [$connector]) {
            if (!$connector instanceof Connector) {
                throw new InvalidArgumentException("job {$i} has no Connector");
            }
            $id = spl_object_id($connector);
            if (isset($seen[$id])) {
                throw new InvalidArgumentException(
                    "job {$i} uses the same connector as job {$seen[$id]}: one call per connector at a time"
                );
            }
            $seen[$id] = $i;
        }
        $results = [];
        /** @var array<int, Call> $calls */
        $calls = [];
        foreach ($jobs as $i => [, $begin]) {
            try {
                $calls[$i] = $begin();
            } catch (\Throwable $e) {
                $results[$i] = $e;
            }
        }
        $multi = curl_multi_init();
        /** @var array<int, array{int, \ScimProvisioner\Internal\CurlExchange, HttpRequest, int}> $inFlight by handle id */
        $inFlight = [];
        /** @var array<int, true> $waiting jobs whose request is in flight */
        $waiting = [];
        try {
            while ($calls !== []) {
                foreach ($calls as $i => $call) {
                    if (isset($waiting[$i])) {
                        continue;
                    }
                    [$connector, , $end] = $jobs[$i];
                    try {
                        while (!$call->isDone() && !isset($waiting[$i])) {
                            $import = $call->import;
                            $transport = $connector->transport;
                            if (
                                $import !== null && $import['func'] === 'send' && $transport instanceof CurlTransport
                                && $import['interface'] === 'scim:provisioner/http-client@0.1.0'
                            ) {
                                $request = HttpRequest::fromWit((array) $import['args'][0]);
                                try {
                                    $exchange = $transport->prepare($request);
                                } catch (TransportException $e) {
                                    $connector->resumeHttp($call, $e);
                                    continue;
                                }
                                curl_multi_add_handle($multi, $exchange->handle);
                                $inFlight[spl_object_id($exchange->handle)] = [$i, $exchange, $request, hrtime(true)];
                                $waiting[$i] = true;
                            } else {
                                $connector->serve($call);
                            }
                        }
                        if ($call->isDone()) {
                            unset($calls[$i]);
                            $results[$i] = $end($call);
                        }
                    } catch (\Throwable $e) {
                        unset($calls[$i], $waiting[$i]);
                        $results[$i] = $e;
                    }
                }
                if ($inFlight === []) {
                    continue;
                }
                do {
                    $status = curl_multi_exec($multi, $running);
                } while ($status === CURLM_CALL_MULTI_PERFORM);
                if ($status !== CURLM_OK) {
                    throw new BridgeException('curl_multi failed: ' . curl_multi_strerror($status));
                }
                while (($info = curl_multi_info_read($multi)) !== false) {
                    $handle = $info['handle'];
                    [$i, $exchange, $request, $started] = $inFlight[spl_object_id($handle)];
                    unset($inFlight[spl_object_id($handle)], $waiting[$i]);
                    curl_multi_remove_handle($multi, $handle);
                    [$connector] = $jobs[$i];
                    try {
                        $answer = $connector->transport instanceof CurlTransport
                            ? $connector->transport->complete(
                                $request,
                                $exchange,
                                (int) $info['result'],
                                curl_strerror((int) $info['result']) ?? '',
                                $started,
                            )
                            : throw new BridgeException('the transport changed');
                    } catch (TransportException $e) {
                        $answer = $e;
                    }
                    try {
                        $connector->resumeHttp($calls[$i], $answer);
                    } catch (\Throwable $e) {
                        unset($calls[$i]);
                        $results[$i] = $e;
                    }
                }
                if ($running > 0 && $inFlight !== [] && curl_multi_select($multi, 0.05) === -1) {
                    usleep(1000); // select failed (no file descriptors yet): do not spin
                }
            }
        } finally {
            foreach ($inFlight as [, $exchange]) {
                curl_multi_remove_handle($multi, $exchange->handle);
            }
            curl_multi_close($multi);
        }
        ksort($results);
        return array_values($results);
    }
}
