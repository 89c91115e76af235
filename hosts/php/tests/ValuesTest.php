<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use PHPUnit\Framework\TestCase;
use ScimProvisioner\Action;
use ScimProvisioner\BatchItem;
use ScimProvisioner\BatchOutcome;
use ScimProvisioner\CmsUser;
use ScimProvisioner\HttpRequest;
use ScimProvisioner\HttpResponse;
use ScimProvisioner\Link;
use ScimProvisioner\ProvisioningException;
use ScimProvisioner\ProvisionOutcome;
use ScimProvisioner\ServerCapabilities;
use ScimProvisioner\StreamLogger;
use ScimProvisioner\Internal\RedactingLogger;

/** The canonical JSON mapping of WIT values (jco-style) for the records and errors. */
final class ValuesTest extends TestCase
{
    public function testCmsUserFieldsMapToFieldValueVariants(): void
    {
        $user = new CmsUser('7', ['name' => 'a', 'age' => 42, 'score' => 1.5, 'vip' => true, 'roles' => ['x', 'y'], 'gone' => null], false);
        $wit = $user->toWit();
        $this->assertSame([
            'id' => '7',
            'fields' => [
                ['name', ['tag' => 'text', 'val' => 'a']],
                ['age', ['tag' => 'number', 'val' => 42.0]],
                ['score', ['tag' => 'number', 'val' => 1.5]],
                ['vip', ['tag' => 'boolean', 'val' => true]],
                ['roles', ['tag' => 'text-list', 'val' => ['x', 'y']]],
                ['gone', ['tag' => 'null']],
            ],
            'active' => false,
        ], $wit);
        $this->assertStringContainsString('"val":42.0', json_encode($wit, JSON_PRESERVE_ZERO_FRACTION));
        $back = CmsUser::fromWit($wit);
        $this->assertSame(['name' => 'a', 'age' => 42.0, 'score' => 1.5, 'vip' => true, 'roles' => ['x', 'y'], 'gone' => null], $back->fields);
        $this->assertFalse($back->active);

        $this->expectException(\InvalidArgumentException::class);
        $this->expectExceptionMessage('field address: a CMS field is a string, number, boolean, list of strings or null, not array');
        new CmsUser('1', ['address' => ['street' => 'x']]);
    }

    public function testOutcomesLinksAndBatches(): void
    {
        $wit = ['action' => 'created', 'reason' => null, 'link' => ['remote-id' => 'r1', 'version' => 'W/"1"', 'snapshot' => '{}'],
            'location' => 'https://x/Users/r1', 'requests' => 2];
        $o = ProvisionOutcome::fromWit($wit);
        $this->assertSame(Action::Created, $o->action);
        $this->assertSame('r1', $o->link?->remoteId);
        $this->assertSame($wit, $o->toWit());

        $item = new BatchItem(new CmsUser('1', ['name' => 'n']), 'deleted', new Link('r1'));
        $this->assertSame(['user' => ['id' => '1', 'fields' => [['name', ['tag' => 'text', 'val' => 'n']]], 'active' => true],
            'event' => 'deleted', 'link' => ['remote-id' => 'r1', 'version' => null, 'snapshot' => null]], $item->toWit());

        $batch = BatchOutcome::fromWit(['results' => [
            ['tag' => 'ok', 'val' => $wit],
            ['tag' => 'err', 'val' => ['tag' => 'scim', 'val' => ['status' => 503, 'scim-type' => null, 'detail' => 'busy', 'retry' => ['tag' => 'after-seconds', 'val' => 30]]]],
        ], 'requests' => 3, 'bulk-requests' => 1]);
        $this->assertInstanceOf(ProvisionOutcome::class, $batch->results[0]);
        $err = $batch->results[1];
        $this->assertInstanceOf(ProvisioningException::class, $err);
        $this->assertSame(503, $err->status);
        $this->assertSame('after-seconds', $err->retry);
        $this->assertSame(30, $err->retryAfterSeconds);
        $this->assertSame('the SCIM server answered HTTP 503: busy (retry after 30 s)', $err->getMessage());
        $this->assertSame(1, $batch->bulkRequests);

        $caps = ServerCapabilities::fromWit(['discovered' => true, 'patch' => true, 'bulk' => ['max-operations' => 10, 'max-payload-size' => 1000],
            'filter-max-results' => 100, 'etag' => false, 'sort' => true, 'change-password' => false]);
        $this->assertSame(10, $caps->bulk?->maxOperations);
        $this->assertSame(100, $caps->filterMaxResults);
    }

    public function testErrorsCarryCaseStatusAndRetryClass(): void
    {
        $e = ProvisioningException::fromWit(['tag' => 'scim', 'val' => ['status' => 409, 'scim-type' => 'uniqueness', 'detail' => 'taken', 'retry' => ['tag' => 'permanent']]]);
        $this->assertSame(['scim', 409, 'uniqueness', 'taken', 'permanent', null], [$e->case, $e->status, $e->scimType, $e->detail, $e->retry, $e->retryAfterSeconds]);
        $this->assertFalse($e->isRetryable());
        $e = ProvisioningException::fromWit(['tag' => 'transport', 'val' => ['error' => ['tag' => 'timeout'], 'retry' => ['tag' => 'backoff']]]);
        $this->assertSame(['transport', 'timeout', 'backoff'], [$e->case, $e->transportError, $e->retry]);
        $this->assertSame('the SCIM server did not answer in time (retryable)', $e->getMessage());
        $e = ProvisioningException::fromWit(['tag' => 'missing-attribute', 'val' => ['user-id' => '5', 'attribute' => 'userName']]);
        $this->assertSame('user 5: required attribute userName has no value; nothing was sent', $e->getMessage());
        $this->assertSame(['tag' => 'missing-attribute', 'val' => ['user-id' => '5', 'attribute' => 'userName']], $e->toWit());
        $e = ProvisioningException::fromWit(['tag' => 'unexpected-response', 'val' => ['status' => 404, 'reason' => 'HTML page', 'retry' => ['tag' => 'permanent']]]);
        $this->assertSame('not a SCIM answer (HTTP 404) (check the SCIM base URL): HTML page', $e->getMessage());
    }

    public function testHttpRecordsCarryBytesAsBase64(): void
    {
        $r = HttpRequest::fromWit(['method' => ['tag' => 'patch'], 'url' => 'https://x/Users/1', 'headers' => [['Authorization', 'Bearer t0ken']],
            'body' => base64_encode("\x00\xffbin"), 'timeout-ms' => 500]);
        $this->assertSame('PATCH', $r->method);
        $this->assertSame("\x00\xffbin", $r->body);
        $this->assertSame('Bearer t0ken', $r->header('authorization'));
        $this->assertStringNotContainsString('t0ken', print_r($r, true), 'dumps never show header values');
        $other = HttpRequest::fromWit(['method' => ['tag' => 'other', 'val' => 'PROPFIND'], 'url' => 'https://x', 'headers' => [], 'body' => null, 'timeout-ms' => 1]);
        $this->assertSame(['tag' => 'other', 'val' => 'PROPFIND'], $other->toWit()['method']);
        $resp = new HttpResponse(201, [['X', "bad\xff"]], "\x01\x02");
        $this->assertSame(['status' => 201, 'headers' => [['X', 'bad?']], 'body' => 'AQI='], $resp->toWit());
    }

    public function testServerRequestsAndResponsesRoundTrip(): void
    {
        $req = new \ScimProvisioner\Request('PATCH', '/Users/1', 'attributes=userName', [['Authorization', 'Bearer t0ken']], "{\"a\":1}");
        $wit = $req->toWit();
        $this->assertSame('eyJhIjoxfQ==', $wit['body']);
        $this->assertEquals($req, \ScimProvisioner\Request::fromWit($wit));
        $this->assertStringNotContainsString('t0ken', print_r($req, true));
        $resp = \ScimProvisioner\Response::fromWit(['status' => 204, 'headers' => [['ETag', 'W/"2"']], 'body' => '']);
        $this->assertSame('W/"2"', $resp->header('etag'));
        $this->assertSame(['status' => 204, 'headers' => [['ETag', 'W/"2"']], 'body' => ''], $resp->toWit());
        $error = json_decode(\ScimProvisioner\Response::error(500, 'internal error')->body, true);
        $this->assertSame(['urn:ietf:params:scim:api:messages:2.0:Error'], $error['schemas']);
        $this->assertSame('500', $error['status']);
    }

    public function testRedactingLoggerScrubsSecrets(): void
    {
        $stream = fopen('php://memory', 'w+b');
        $log = new RedactingLogger(new StreamLogger($stream, 'debug'), ['sup3rsecret', 'x']);
        $log->warning('token sup3rsecret leaked in {where}', ['where' => 'sup3rsecret body']);
        rewind($stream);
        $text = (string) stream_get_contents($stream);
        $this->assertStringContainsString('warning: token <redacted> leaked in <redacted> body', $text);
        $this->assertStringNotContainsString('sup3rsecret', $text);
    }
}
