<?php

declare(strict_types=1);

namespace ScimSamples\DrupalSite\Web;

// Only through router.php (its session, CSRF and login checks): never as a script of its own.
if (!defined('ADMIN_SITE_ROUTER')) {
    http_response_code(404);
    echo "This page runs only through the admin site's router (router.php).\n";
    exit(1);
}

use ScimProvisioner\GuestTrapException;
use ScimProvisioner\ProvisioningException;
use ScimProvisioner\UserEvent;

/** @var Admin $admin */
const PER_PAGE = 50;
$site = $admin->site();
$errors = [];
$form = null;
$method = $_SERVER['REQUEST_METHOD'] ?? 'GET';
$action = (string) ($_POST['action'] ?? '');
$id = (string) ($_POST['id'] ?? $_GET['edit'] ?? '');

/** @return array<string, mixed> the user form's fields */
function user_fields(array $post): array
{
    $fields = [];
    foreach (['field_first_name', 'field_last_name'] as $k) {
        if (trim((string) ($post[$k] ?? '')) !== '') {
            $fields[$k] = trim((string) $post[$k]);
        }
    }
    $roles = array_values(array_filter(array_map('trim', explode(',', (string) ($post['roles'] ?? ''))), 'strlen'));
    if ($roles !== []) {
        $fields['roles'] = $roles;
    }
    return $fields;
}

$report = static function (string $what, string $delivery): void {
    $failed = str_starts_with($delivery, 'failed');
    flash($failed ? 'error' : 'success', "{$what}; provisioning: {$delivery}");
};

try {
    if ($method === 'POST' && in_array($action, ['add', 'edit'], true)) {
        $form = ['id' => $id, 'name' => trim((string) ($_POST['name'] ?? '')), 'mail' => trim((string) ($_POST['mail'] ?? '')),
            'field_first_name' => (string) ($_POST['field_first_name'] ?? ''), 'field_last_name' => (string) ($_POST['field_last_name'] ?? ''),
            'roles' => (string) ($_POST['roles'] ?? '')];
        if ($form['name'] === '' || !preg_match('/^[\w.@+-]{1,60}$/u', $form['name'])) {
            $errors['name'] = 'The user name is 1 to 60 letters, digits or . @ + - _ (no spaces).';
        }
        if (!filter_var($form['mail'], FILTER_VALIDATE_EMAIL)) {
            $errors['mail'] = 'Enter a valid email address, e.g. alice@example.com.';
        }
        if ($errors === []) {
            try {
                if ($action === 'add') {
                    [$user, $delivery] = $site->addUser($form['name'], $form['mail'], user_fields($_POST), empty($_POST['blocked']));
                    $report("Added {$user['name']}", $delivery);
                } else {
                    [$user, $delivery] = $site->changeUser($id, UserEvent::Updated, static function (array $u) use ($form): array {
                        $u['name'] = $form['name'];
                        $u['mail'] = $form['mail'];
                        foreach (['field_first_name', 'field_last_name', 'roles'] as $k) {
                            unset($u['fields'][$k]);
                        }
                        $u['fields'] = array_merge($u['fields'], user_fields($_POST));
                        return $u;
                    });
                    $report("Saved {$user['name']}", $delivery);
                }
                redirect('/users' . (isset($_GET['page']) ? '?page=' . (int) $_GET['page'] : ''));
            } catch (\InvalidArgumentException $x) {
                $errors['name'] = $x->getMessage();
            }
        }
    } elseif ($method === 'POST' && in_array($action, ['block', 'unblock', 'delete'], true)) {
        $event = ['block' => UserEvent::Blocked, 'unblock' => UserEvent::Unblocked, 'delete' => UserEvent::Deleted][$action];
        [$user, $delivery] = $site->changeUser($id, $event, static function (array $u) use ($event): array {
            if ($event !== UserEvent::Deleted) {
                $u['active'] = $event === UserEvent::Unblocked;
            }
            return $u;
        });
        $report(ucfirst($action === 'delete' ? 'deleted' : "{$action}ed") . " {$user['name']}", $delivery);
        redirect('/users');
    } elseif ($method === 'POST' && $action === 'provision') {
        $user = $site->findUser($id);
        try {
            $outcome = $site->provision($id);
            flash('success', "User {$user['name']} provisioned successfully: {$outcome->action->value}"
                . ($outcome->link ? " (remote id {$outcome->link->remoteId})" : '') . ($outcome->reason !== null ? " ({$outcome->reason})" : ''));
        } catch (ProvisioningException|GuestTrapException $x) {
            flash('error', "Provisioning {$user['name']} failed: " . $admin->redact($x->getMessage()));
        }
        redirect('/users');
    }
} catch (\InvalidArgumentException $x) {
    flash('error', $x->getMessage());
    redirect('/users');
}

if ($form === null && isset($_GET['edit'])) {
    $u = $site->user((string) $_GET['edit']);
    if ($u !== null) {
        $form = ['id' => $u['id'], 'name' => $u['name'], 'mail' => $u['mail'], 'field_first_name' => (string) ($u['fields']['field_first_name'] ?? ''),
            'field_last_name' => (string) ($u['fields']['field_last_name'] ?? ''), 'roles' => implode(', ', (array) ($u['fields']['roles'] ?? []))];
    }
}
$editing = $form !== null && ($form['id'] ?? '') !== '';
$form ??= ['id' => '', 'name' => '', 'mail' => '', 'field_first_name' => '', 'field_last_name' => '', 'roles' => ''];
$err = static fn (string $k): string => isset($errors[$k]) ? '<span class="field-error" id="error-' . $k . '">' . e($errors[$k]) . '</span>' : '';
$body = ($errors !== [] ? '<div class="flash error" id="form-error">Nothing was saved: correct the fields marked below.</div>' : '');
$showForm = $editing || isset($_GET['add']) || $errors !== [];
if ($showForm) {
    $body .= '<form method="post" class="card" id="user-form">' . csrf_field()
        . '<input type="hidden" name="action" value="' . ($editing ? 'edit' : 'add') . '"><input type="hidden" name="id" value="' . e($form['id']) . '">'
        . '<h2>' . ($editing ? 'Edit ' . e($form['name']) : 'Add user') . '</h2>'
        . '<label>User name <input name="name" id="user-name" value="' . e($form['name']) . '"></label>' . $err('name')
        . '<label>Email <input name="mail" id="user-mail" value="' . e($form['mail']) . '"></label>' . $err('mail')
        . '<label>First name <input name="field_first_name" id="user-first" value="' . e($form['field_first_name']) . '"></label>'
        . '<label>Last name <input name="field_last_name" id="user-last" value="' . e($form['field_last_name']) . '"></label>'
        . '<label>Roles (comma-separated) <input name="roles" id="user-roles" value="' . e($form['roles']) . '"></label>'
        . ($editing ? '' : '<label class="check"><input type="checkbox" name="blocked" value="1"> Blocked</label>')
        . '<button id="save-user">' . ($editing ? 'Save' : 'Create new account') . '</button> <a href="/users">Cancel</a></form>';
} else {
    $body .= '<p><a class="button" href="/users?add=1" id="add-user">+ Add user</a></p>';
}

$total = $site->countUsers();
$pageNo = max(1, min((int) ($_GET['page'] ?? 1), max(1, (int) ceil($total / PER_PAGE))));
$rows = '';
foreach ($site->usersPage(($pageNo - 1) * PER_PAGE, PER_PAGE) as $u) {
    $state = $u['remote_id'] !== null ? 'linked' : 'not provisioned';
    $last = $u['last_outcome'] !== null ? $u['last_outcome'] . ($u['last_error'] !== null && $u['last_outcome'] === 'failed' ? ': ' . $admin->redact((string) $u['last_error']) : '') : '—';
    $queue = (int) $u['parked'] > 0 ? ' <span class="badge error">parked</span>' : ((int) $u['pending'] > 0 ? ' <span class="badge">queued</span>' : '');
    $button = static fn (string $act, string $label, string $class = ''): string => '<form method="post" class="inline">' . csrf_field()
        . '<input type="hidden" name="action" value="' . $act . '"><input type="hidden" name="id" value="' . e($u['id']) . '">'
        . '<button class="small ' . $class . '" data-action="' . $act . '">' . $label . '</button></form>';
    $rows .= '<tr data-user="' . e($u['name']) . '"><td>' . e($u['id']) . '</td><td>' . e($u['name']) . '</td><td>' . e($u['mail']) . '</td>'
        . '<td>' . ($u['active'] ? 'Active' : '<span class="badge">Blocked</span>') . '</td>'
        . '<td class="remote-id">' . ($u['remote_id'] !== null ? '<code>' . e($u['remote_id']) . '</code>' : '<span class="muted">' . $state . '</span>') . '</td>'
        . '<td class="last-result">' . e($last) . $queue . '</td><td>' . e($u['last_at'] ?? '—') . '</td><td class="actions">'
        . '<a class="small button" href="/users?edit=' . e($u['id']) . '" data-action="edit">Edit</a>'
        . $button($u['active'] ? 'block' : 'unblock', $u['active'] ? 'Block' : 'Unblock')
        . $button('provision', 'Provision now')
        . $button('delete', 'Delete', 'danger') . '</td></tr>';
}
$body .= pager('/users?', $pageNo, PER_PAGE, $total)
    . '<table class="grid" id="users"><thead><tr><th>Id</th><th>User name</th><th>Email</th><th>Status</th><th>Remote id</th><th>Last result</th><th>Last attempt</th><th></th></tr></thead><tbody>'
    . $rows . '</tbody></table>';
page('People', $body);
