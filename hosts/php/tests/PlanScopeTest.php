<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use PHPUnit\Framework\TestCase;
use ScimProvisioner\CmsUser;
use ScimProvisioner\Connector;
use ScimProvisioner\GuestTrapException;
use ScimProvisioner\Plan;
use ScimProvisioner\PlannedAction;
use ScimProvisioner\Tests\Support\Peers;

/**
 * `plan` passes the component only what the provisioning scope reads (`scopeFields()`, the
 * WIT `connector.scope-fields` export) and gets the same plans as with every field. Nothing
 * is sent: plan is pure, so the connectors point at a closed port.
 */
final class PlanScopeTest extends TestCase
{
    private const MIB = 1024 * 1024;
    private const OPERATIONS = ['create' => true, 'update' => true, 'deactivate' => true, 'delete' => false];
    /** Every event with both link states: each path `decide` takes. */
    private const CASES = [['created', false], ['created', true], ['updated', false], ['updated', true], ['blocked', true],
        ['unblocked', true], ['deleted', true], ['reconcile', false], ['reconcile', true]];

    /**
     * @param array<string, mixed> $scope
     * @param array<string, mixed> $runtimeOptions
     */
    private static function connector(array $scope, array $runtimeOptions = []): Connector
    {
        return Connector::open(Peers::runtime($runtimeOptions), [
            'base_url' => 'http://127.0.0.1:9/v2', 'token' => 'T0kenT0ken', 'timeout' => 1000,
            'policy' => ['operations' => self::OPERATIONS, 'scope' => $scope],
        ]);
    }

    /**
     * A Drupal-style user with many fields the scope does not read, `$read` among them.
     *
     * @param array<string, mixed> $read
     */
    private static function fat(string $id, array $read, bool $active = true): CmsUser
    {
        $fields = ['name' => "u{$id}", 'mail' => "u{$id}@drupal.example", 'field_first_name' => 'Ann', 'field_last_name' => 'Lee'];
        for ($i = 0; $i < 30; $i++) {
            $fields["field_extra_{$i}"] = $i % 3 === 0 ? ['a', 'b', "c{$i}"] : ($i % 3 === 1 ? "text {$i}" : $i * 1.5);
        }
        // Between the others, so the cut is seen to keep only it wherever it stands.
        $fields = array_slice($fields, 0, 10, true) + $read + array_slice($fields, 10, null, true);
        return new CmsUser($id, $fields, $active);
    }

    /** @return array{0: string, 1: string|null} */
    private static function shape(Plan $plan): array
    {
        return [$plan->action->value, $plan->reason];
    }

    public function testAScopeOnRolesNamesRolesAndTheCutUserGetsEveryPlanTheWholeOneGets(): void
    {
        $c = self::connector(['field' => 'roles', 'any_of' => ['member', 'editor']]);
        $this->assertSame(['roles'], $c->scopeFields());

        $expected = [
            // In scope: provisioned as usual.
            'member' => ['created', false, PlannedAction::Create],
            'editor and more' => ['updated', true, PlannedAction::Update],
            // Out of scope: not created; deactivated where linked.
            'other' => ['created', false, PlannedAction::Skip],
            'none' => ['updated', true, PlannedAction::Deactivate],
        ];
        $roles = ['member' => ['member'], 'editor and more' => ['viewer', 'editor'], 'other' => ['viewer'], 'none' => []];
        foreach ($roles as $label => $list) {
            [$event, $linked, $action] = $expected[$label];
            $this->assertSame($action, $c->plan(self::fat('7', ['roles' => $list]), $event, $linked)->action, "{$label}, {$event}, linked " . var_export($linked, true));
            foreach (self::CASES as [$event, $linked]) {
                foreach ([true, false] as $active) {
                    $whole = self::fat('7', ['roles' => $list], $active);
                    $only = new CmsUser('other-id', ['roles' => $list], $active);
                    $this->assertSame(self::shape($c->plan($only, $event, $linked)), self::shape($c->plan($whole, $event, $linked)),
                        "{$label}, {$event}, linked " . var_export($linked, true) . ', active ' . var_export($active, true));
                }
            }
        }
        $skip = $c->plan(self::fat('7', ['roles' => ['viewer']]), 'created', false);
        $this->assertSame(PlannedAction::Skip, $skip->action);
        $this->assertIsString($skip->reason);
        $this->assertNotSame('', $skip->reason);
        // A user without the field is out of scope, as one whose field says so.
        $this->assertSame(PlannedAction::Skip, $c->plan(self::fat('7', []), 'created', false)->action);
        $this->assertSame(1, $c->instancesOpened(), 'the list was asked on the one instance');
    }

    public function testTheFieldsTheScopeDoesNotReadNeverReachTheBridge(): void
    {
        $c = self::connector(['field' => 'roles', 'any_of' => ['member']]);
        // Bytes that cannot be encoded for the bridge, in a field plan does not read: never
        // converted nor encoded, so plan answers.
        $bad = new CmsUser('1', ['name' => "bad\xff", 'roles' => ['member'], 'nick' => "n\xfe"]);
        $this->assertSame(PlannedAction::Create, $c->plan($bad, 'created', false)->action);
        // In the field the scope reads, they are refused as before, and the instance serves on.
        try {
            $c->plan(new CmsUser('1', ['name' => 'ok', 'roles' => ["member\xff"]]), 'created', false);
            $this->fail('invalid UTF-8 in a field the scope reads must be refused');
        } catch (\InvalidArgumentException $e) {
            $this->assertStringContainsString('strings must be valid UTF-8', $e->getMessage());
        }
        // What crosses: only `roles`, in the user's order, and an empty id.
        $this->assertSame(
            ['id' => '', 'fields' => [['roles', ['tag' => 'text-list', 'val' => ['member']]]], 'active' => false],
            (new CmsUser('9', ['name' => 'x', 'roles' => ['member'], 'level' => 3], false))->toWitOnly(array_flip($c->scopeFields()), false),
        );
        $this->assertSame(1, $c->instancesOpened());
    }

    public function testWithIdInTheScopeTheIdDecides(): void
    {
        $c = self::connector(['any' => [['field' => 'level', 'equals' => 3], ['field' => '@id', 'equals' => '42'], ['field' => 'roles', 'any_of' => ['member']]]]);
        $this->assertSame(['level', '@id', 'roles'], $c->scopeFields(), 'each field once, in the order the scope reads them');

        // Only the id puts these users in scope: the cut keeps it.
        $this->assertSame(PlannedAction::Create, $c->plan(self::fat('42', ['roles' => ['viewer'], 'level' => 2]), 'created', false)->action);
        $this->assertSame(PlannedAction::Create, $c->plan(new CmsUser('42', []), 'created', false)->action);
        $this->assertSame(PlannedAction::Skip, $c->plan(self::fat('43', ['roles' => ['viewer'], 'level' => 2]), 'created', false)->action);
        $this->assertSame(PlannedAction::Deactivate, $c->plan(self::fat('43', ['roles' => ['viewer'], 'level' => 2]), 'updated', true)->action);
        // The other fields the scope reads still cross.
        $this->assertSame(PlannedAction::Update, $c->plan(self::fat('43', ['roles' => ['viewer'], 'level' => 3]), 'updated', true)->action);
        $this->assertSame(PlannedAction::Update, $c->plan(self::fat('43', ['roles' => ['member'], 'level' => 1]), 'updated', true)->action);
        foreach (['42', '43'] as $id) {
            foreach (self::CASES as [$event, $linked]) {
                $this->assertSame(
                    self::shape($c->plan(new CmsUser($id, ['level' => 2, 'roles' => ['viewer']]), $event, $linked)),
                    self::shape($c->plan(self::fat($id, ['roles' => ['viewer'], 'level' => 2]), $event, $linked)),
                    "user {$id}, {$event}, linked " . var_export($linked, true),
                );
            }
        }
    }

    public function testWithoutAScopeNothingButActiveCrosses(): void
    {
        $c = Connector::open(Peers::runtime(), ['base_url' => 'http://127.0.0.1:9/v2', 'token' => 'T0kenT0ken', 'policy' => ['operations' => self::OPERATIONS]]);
        $this->assertSame([], $c->scopeFields());
        $this->assertSame(PlannedAction::Create, $c->plan(self::fat('1', ['roles' => []]), 'created', false)->action);
        $this->assertSame(PlannedAction::Deactivate, $c->plan(self::fat('1', ['roles' => ['member']], false), 'blocked', true)->action);
        $this->assertSame(PlannedAction::Update, $c->plan(new CmsUser('1', ['name' => "bad\xff"]), 'updated', true)->action, 'no field crosses');
    }

    public function testAFreshInstanceAfterATrapAsksAgainAndCutsTheSame(): void
    {
        $c = self::connector(['field' => 'roles', 'any_of' => ['member']], ['memory_limit_bytes' => 32 * self::MIB]);
        $this->assertSame(['roles'], $c->scopeFields());
        try {
            $c->importDialect(str_repeat('a', 48 * self::MIB));
            $this->fail('a 48 MiB document in a 32 MiB instance must trap');
        } catch (GuestTrapException $e) {
            $this->assertSame('memory', $e->kind, $e->getMessage());
        }
        $this->assertSame(PlannedAction::Create, $c->plan(self::fat('1', ['roles' => ['member']]), 'created', false)->action);
        $this->assertSame(PlannedAction::Skip, $c->plan(self::fat('2', ['roles' => ['viewer']]), 'created', false)->action);
        $this->assertSame(['roles'], $c->scopeFields());
        $this->assertSame(2, $c->instancesOpened());
    }
}
