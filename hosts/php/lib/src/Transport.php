<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * The component's `http-client` import, served by PHP: {@see CurlTransport}, or
 * {@see Psr18Transport} over the CMS's own PSR-18 client (Drupal: Guzzle with the site's
 * proxy and CA settings; Joomla: its HTTP factory), or an implementation of this.
 *
 * Rules an implementation must keep: every HTTP status is a response (a 404 or a 409 is
 * data); follow no redirects; honour the request's timeout; send only to the configured
 * origin; never log or echo header values (the Authorization header is among them).
 */
interface Transport
{
    /**
     * Sends one request and returns the server's answer.
     *
     * @throws TransportException when the exchange could not be carried out (`denied`,
     *     `invalid-url`, `cannot-connect`, `tls`, `timeout`, `other`)
     */
    public function send(HttpRequest $request): HttpResponse;
}
