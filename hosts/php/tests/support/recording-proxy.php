<?php

declare(strict_types=1);

/*
 * A php -S router in front of a SCIM server (OutboxWorkersTest): forwards every request to
 * UPSTREAM (scheme://host:port) unchanged, and for every write the server accepted (2xx
 * POST/PUT/PATCH to /Users) appends one JSON line to RECORD_FILE: the user's id and userName
 * as the server answered, and the sequence number the server stored (the `seq-N-seq` marker
 * the test puts in the user's first name). One php -S process serves one request at a
 * time, in the order they come; a user's requests never overlap anyway (the outbox holds one
 * at a time), so the lines of one user are in the order the server took them. Used by the
 * WordPress plugin's tests too (hosts/wordpress/tests/test_many_workers.py).
 */

$upstream = (string) getenv('UPSTREAM');
// DELAY_MS: a slow server, for a test that needs a worker to be mid-batch when it is killed.
if ((int) getenv('DELAY_MS') > 0) {
    usleep((int) getenv('DELAY_MS') * 1000);
}
$record = (string) getenv('RECORD_FILE');
$method = $_SERVER['REQUEST_METHOD'];
$uri = $_SERVER['REQUEST_URI'];
$body = (string) file_get_contents('php://input');

$headers = [];
foreach (getallheaders() as $name => $value) {
    if (!in_array(strtolower($name), ['host', 'content-length', 'connection', 'expect'], true)) {
        $headers[] = "{$name}: {$value}";
    }
}
$ch = curl_init($upstream . $uri);
curl_setopt_array($ch, [
    CURLOPT_CUSTOMREQUEST => $method,
    CURLOPT_HTTPHEADER => $headers,
    CURLOPT_RETURNTRANSFER => true,
    CURLOPT_HEADER => true,
    CURLOPT_TIMEOUT => 30,
    CURLOPT_PROXY => '',
]);
if ($body !== '') {
    curl_setopt($ch, CURLOPT_POSTFIELDS, $body);
}
$response = curl_exec($ch);
if ($response === false) {
    http_response_code(502);
    echo curl_error($ch);
    return true;
}
$status = (int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
$headerSize = (int) curl_getinfo($ch, CURLINFO_HEADER_SIZE);
$responseBody = substr($response, $headerSize);
$self = 'http://' . $_SERVER['HTTP_HOST'];
foreach (explode("\r\n", substr($response, 0, $headerSize)) as $line) {
    if (preg_match('/^(content-type|etag|location):\s*(.*)$/i', $line, $m)) {
        header($m[1] . ': ' . str_replace($upstream, $self, $m[2]));
    }
}
// After the headers: PHP turns any response with a Location header into a 302.
http_response_code($status);
echo $responseBody;

if ($status >= 200 && $status < 300 && in_array($method, ['POST', 'PUT', 'PATCH'], true)
    && preg_match('#/Users(?:/([^/?]+))?(?:\?|$)#', $uri, $path)) {
    $resource = json_decode($responseBody, true);
    $text = is_array($resource) ? json_encode($resource['name'] ?? null) : $body;
    if (preg_match('/seq-(\d+)-seq/', (string) $text, $seq) || preg_match('/seq-(\d+)-seq/', $body, $seq)) {
        $line = json_encode([
            'method' => $method,
            'id' => is_array($resource) ? ($resource['id'] ?? ($path[1] ?? null)) : ($path[1] ?? null),
            'userName' => is_array($resource) ? ($resource['userName'] ?? null) : null,
            'seq' => (int) $seq[1],
        ]) . "\n";
        file_put_contents($record, $line, FILE_APPEND | LOCK_EX);
    }
}
return true;
