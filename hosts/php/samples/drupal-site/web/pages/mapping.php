<?php

declare(strict_types=1);

namespace ScimSamples\DrupalSite\Web;

// Only through router.php (its session, CSRF and login checks): never as a script of its own.
if (!defined('ADMIN_SITE_ROUTER')) {
    http_response_code(404);
    echo "This page runs only through the admin site's router (router.php).\n";
    exit(1);
}

use ScimProvisioner\Connector;
use ScimProvisioner\ProvisioningException;

/** @var Admin $admin */

/** A rule as the form shows it: target, kind, value, transform text, create-only, required. */
function rule_to_row(array $rule): array
{
    $kind = isset($rule['constant']) ? 'constant' : (isset($rule['template']) ? 'template' : 'source');
    $value = $rule[$kind] ?? '';
    $transforms = [];
    foreach ((array) ($rule['transform'] ?? []) as $t) {
        if (is_string($t)) {
            $transforms[] = $t;
        } elseif (isset($t['split'])) {
            $transforms[] = 'split:' . $t['split'];
        } elseif (isset($t['join'])) {
            $transforms[] = 'join:' . $t['join'];
        } elseif (isset($t['regex_replace'])) {
            $transforms[] = 'regex_replace:' . $t['regex_replace']['pattern'] . '=>' . $t['regex_replace']['replacement'];
        }
    }
    return ['target' => (string) ($rule['target'] ?? ''), 'kind' => $kind, 'value' => is_array($value) ? implode(',', $value) : (is_bool($value) ? ($value ? 'true' : 'false') : (string) $value),
        'transform' => implode(' | ', $transforms), 'create_only' => ($rule['apply'] ?? 'always') === 'create', 'required' => (bool) ($rule['required'] ?? false)];
}

/** The form's row as a policy rule; $error is set when the row cannot be read. */
function row_to_rule(array $row, ?string &$error): array
{
    $error = null;
    $rule = ['target' => trim((string) $row['target'])];
    $value = (string) $row['value'];
    $kind = in_array($row['kind'] ?? '', ['source', 'constant', 'template'], true) ? $row['kind'] : 'source';
    if ($rule['target'] === '') {
        $error = 'Enter the SCIM attribute this rule fills, e.g. title or name.givenName.';
    } elseif ($value === '' && $kind !== 'constant') {
        $error = $kind === 'source' ? 'Enter the CMS field to read, e.g. field_job_title, or @id / @active.' : 'Enter the template, e.g. {field_first_name} {field_last_name}.';
    }
    if ($kind === 'constant') {
        $rule['constant'] = match (strtolower($value)) { 'true' => true, 'false' => false, default => is_numeric($value) ? $value + 0 : $value };
    } else {
        $rule[$kind] = trim($value);
    }
    $transforms = [];
    foreach (array_filter(array_map('trim', explode('|', (string) $row['transform'])), 'strlen') as $t) {
        if (str_starts_with($t, 'split:')) {
            $transforms[] = ['split' => substr($t, 6)];
        } elseif (str_starts_with($t, 'join:')) {
            $transforms[] = ['join' => substr($t, 5)];
        } elseif (str_starts_with($t, 'regex_replace:') && str_contains($t, '=>')) {
            [$pattern, $replacement] = explode('=>', substr($t, 14), 2);
            $transforms[] = ['regex_replace' => ['pattern' => $pattern, 'replacement' => $replacement]];
        } else {
            $transforms[] = $t;
        }
    }
    if ($transforms !== []) {
        $rule['transform'] = $transforms;
    }
    if (!empty($row['create_only'])) {
        $rule['apply'] = 'create';
    }
    if (!empty($row['required'])) {
        $rule['required'] = true;
    }
    return $rule;
}

$saved = $admin->settings()['mapping'];
$rows = array_map('ScimSamples\DrupalSite\Web\rule_to_row', $saved);
$errors = [];
$general = '';
$preview = '';
$method = $_SERVER['REQUEST_METHOD'] ?? 'GET';
if ($method === 'POST' && ($_POST['action'] ?? '') === 'save') {
    $rows = [];
    $rules = [];
    foreach ((array) ($_POST['rules'] ?? []) as $row) {
        $row = array_merge(['target' => '', 'kind' => 'source', 'value' => '', 'transform' => ''], (array) $row);
        $isNew = !empty($row['new']);
        if (!empty($row['remove']) || ($isNew && trim($row['target']) === '' && trim($row['value']) === '')) {
            continue;   // removed, or the empty "add a rule" row
        }
        $row['create_only'] = !empty($row['create_only']);
        $row['required'] = !empty($row['required']);
        $rule = row_to_rule($row, $error);
        if ($error !== null) {
            $errors[count($rows)] = $error;
        }
        $rows[] = $row;
        $rules[] = $rule;
    }
    if ($errors === []) {
        try {
            Connector::open($admin->runtime(), $admin->connectorConfig(['mapping' => $rules]));
        } catch (ProvisioningException $x) {
            $message = $admin->redact($x->getMessage());
            if (preg_match_all('/mapping\[(\d+)\] \(target "[^"]*"\): (.*?)(?=; mapping\[\d+\]|$)/s', $message, $m, PREG_SET_ORDER)) {
                foreach ($m as [, $i, $problem]) {
                    $errors[(int) $i] = ($errors[(int) $i] ?? '') . $problem . ' ';
                }
            } else {
                $general = $message;
            }
        }
    }
    if ($errors === [] && $general === '') {
        $admin->save(['mapping' => $rules]);
        flash('success', 'The attribute mapping was saved (' . count($rules) . ' rules).');
        redirect('/mapping');
    }
}
if ($method === 'POST' && ($_POST['action'] ?? '') === 'preview') {
    $who = trim((string) ($_POST['user'] ?? ''));
    try {
        $resource = $admin->site()->mapUser($who);
        $preview = '<div class="card" id="preview"><h2>' . e($who) . ' maps to</h2><pre id="preview-json">'
            . e(json_encode($resource, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE)) . '</pre></div>';
    } catch (\InvalidArgumentException|ProvisioningException $x) {
        $preview = '<div class="flash error" id="preview-error">Preview failed: ' . e($admin->redact($x->getMessage())) . '</div>';
    }
}

$kinds = ['source' => 'CMS field', 'constant' => 'constant', 'template' => 'template'];
$body = '';
if ($errors !== [] || $general !== '') {
    $body .= '<div class="flash error" id="form-error">Nothing was saved: ' . ($general !== '' ? e($general) : 'correct the rules marked below.') . ' The saved mapping is unchanged.</div>';
}
$body .= $preview . '<form method="post" class="card">' . csrf_field() . '<input type="hidden" name="action" value="save">'
    . '<table class="grid" id="rules"><thead><tr><th>#</th><th>SCIM attribute (target)</th><th>Kind</th><th>Field / constant / template</th>'
    . '<th>Transform <small>(a | b, split:, join:…)</small></th><th>Create only</th><th>Required</th><th>Remove</th></tr></thead><tbody>';
$rows[] = ['target' => '', 'kind' => 'source', 'value' => '', 'transform' => '', 'create_only' => false, 'required' => false, 'new' => true];
foreach ($rows as $i => $row) {
    $new = !empty($row['new']);
    $options = '';
    foreach ($kinds as $k => $label) {
        $options .= '<option value="' . $k . '"' . ($row['kind'] === $k ? ' selected' : '') . '>' . e($label) . '</option>';
    }
    $body .= '<tr' . (isset($errors[$i]) ? ' class="invalid"' : '') . ($new ? ' class="new-rule"' : '') . ' id="rule-' . $i . '">'
        . '<td>' . ($new ? 'new' : $i) . ($new ? '<input type="hidden" name="rules[' . $i . '][new]" value="1">' : '') . '</td>'
        . '<td><input name="rules[' . $i . '][target]" value="' . e($row['target']) . '" placeholder="' . ($new ? 'add a rule: e.g. title' : '') . '">'
        . (isset($errors[$i]) ? '<span class="field-error rule-error" id="rule-error-' . $i . '">' . e(trim($errors[$i])) . '</span>' : '') . '</td>'
        . '<td><select name="rules[' . $i . '][kind]">' . $options . '</select></td>'
        . '<td><input name="rules[' . $i . '][value]" value="' . e($row['value']) . '"></td>'
        . '<td><input name="rules[' . $i . '][transform]" value="' . e($row['transform']) . '" size="12"></td>'
        . '<td><input type="checkbox" name="rules[' . $i . '][create_only]" value="1"' . checked((bool) $row['create_only']) . '></td>'
        . '<td><input type="checkbox" name="rules[' . $i . '][required]" value="1"' . checked((bool) $row['required']) . '></td>'
        . '<td>' . ($new ? '' : '<input type="checkbox" name="rules[' . $i . '][remove]" value="1" title="remove this rule">') . '</td></tr>';
}
$body .= '</tbody></table><button id="save-mapping">Save mapping</button></form>'
    . '<form method="post" class="card">' . csrf_field() . '<input type="hidden" name="action" value="preview">'
    . '<h2>Preview</h2><label>User (name, email or id) <input name="user" id="preview-user" value="' . e($_POST['user'] ?? '') . '"></label>'
    . '<button id="preview-button">Preview the SCIM resource</button></form>';
page('Attribute mapping', $body);
