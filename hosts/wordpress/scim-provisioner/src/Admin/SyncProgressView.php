<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress\Admin;

use ScimProvisioner\WordPress\MetricsRoutes;

/**
 * Live progress of "Sync now" (issue 31, part 3): the sync runs in the confirm form's own
 * request, and while the browser waits for it, this script polls the REST route
 * `scim-provisioner/v1/sync-progress` (cookie and REST nonce, administrators only) every
 * second and shows users done, users/s, remaining and failures.
 */
final class SyncProgressView
{
    /** Prints the progress line (hidden until the form is submitted) and its script. */
    public static function render(string $formId): void
    {
        echo '<p id="scim-sync-progress" aria-live="polite" hidden></p>';
        $config = [
            'form' => $formId,
            'url' => rest_url(MetricsRoutes::NAMESPACE . '/sync-progress'),
            'nonce' => wp_create_nonce('wp_rest'),
            /* translators: placeholders stay as they are: {done}, {total}, {rate}, {remaining}, {failed} */
            'text' => __('Syncing: {done} of {total} users, {rate} users/s, {remaining} remaining, {failed} failed', 'scim-provisioner'),
            'starting' => __('Syncing: starting…', 'scim-provisioner'),
        ];
        $script = 'window.scimSyncProgress = ' . wp_json_encode($config) . ';' . <<<'JS'
(function (c) {
    var form = document.getElementById(c.form);
    var line = document.getElementById('scim-sync-progress');
    if (!form || !line) { return; }
    form.addEventListener('submit', function () {
        var since = Date.now() / 1000 - 2;
        line.hidden = false;
        line.textContent = c.starting;
        var poll = function () {
            fetch(c.url, {credentials: 'same-origin', headers: {'X-WP-Nonce': c.nonce}})
                .then(function (r) { return r.ok ? r.json() : null; })
                .then(function (p) {
                    if (p && p.started >= since) {
                        line.textContent = c.text.replace('{done}', p.done).replace('{total}', p.total)
                            .replace('{rate}', p.per_second).replace('{remaining}', p.remaining)
                            .replace('{failed}', p.failed);
                        line.dataset.done = p.done;
                        line.dataset.total = p.total;
                    }
                })
                .catch(function () {})
                .then(function () { setTimeout(poll, 1000); });
        };
        setTimeout(poll, 300);
    });
})(window.scimSyncProgress);
JS;
        wp_print_inline_script_tag($script);
    }
}
