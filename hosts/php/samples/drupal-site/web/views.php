<?php

declare(strict_types=1);

namespace ScimSamples\DrupalSite\Web;

function e(mixed $value): string
{
    return htmlspecialchars((string) $value, ENT_QUOTES | ENT_SUBSTITUTE, 'UTF-8');
}

function csrf_field(): string
{
    return '<input type="hidden" name="csrf" value="' . e($_SESSION['csrf'] ?? '') . '">';
}

function redirect(string $to): never
{
    header('Location: ' . $to, true, 303);
    exit;
}

/** A message for the next page (post/redirect/get). */
function flash(?string $kind = null, ?string $message = null): string
{
    if ($kind !== null) {
        $_SESSION['flash'][] = [$kind, (string) $message];
        return '';
    }
    $html = '';
    foreach ($_SESSION['flash'] ?? [] as [$k, $m]) {
        $html .= '<div class="flash ' . e($k) . '" id="flash-' . e($k) . '">' . nl2br(e($m)) . '</div>';
    }
    unset($_SESSION['flash']);
    return $html;
}

function page(string $title, string $body): void
{
    header('Content-Type: text/html; charset=utf-8');
    $nav = '';
    if (isset($_SESSION['admin'])) {
        $links = ['/settings' => 'SCIM client', '/mapping' => 'Attribute mapping', '/provisioning' => 'Provisioning',
            '/users' => 'People', '/log' => 'Provisioning log'];
        if (getenv('JOOMLA_SITE_URL')) {
            $links['/server'] = 'Server side (Joomla)';
        }
        $path = (string) parse_url((string) ($_SERVER['REQUEST_URI'] ?? '/'), PHP_URL_PATH);
        foreach ($links as $href => $label) {
            $nav .= '<a href="' . $href . '"' . ($path === $href ? ' class="current"' : '') . '>' . e($label) . '</a>';
        }
        $nav .= '<form method="post" action="/logout" class="inline">' . csrf_field() . '<button class="link" id="logout">Log out</button></form>';
    }
    echo '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>' . e($title) . ' | Drupal-like site</title>'
        . '<link rel="stylesheet" href="/style.css"></head><body><header><strong>Drupal-like site</strong> · User Provisioning'
        . '<nav>' . $nav . '</nav></header><main><h1>' . e($title) . '</h1>' . flash() . $body . '</main></body></html>';
}

function checked(bool $on): string
{
    return $on ? ' checked' : '';
}

/** Pager links: "Showing a–b of n". */
function pager(string $base, int $page, int $per, int $total): string
{
    $pages = max(1, (int) ceil($total / $per));
    $from = $total === 0 ? 0 : ($page - 1) * $per + 1;
    $to = min($total, $page * $per);
    $html = '<p class="pager" id="pager">Showing ' . $from . '–' . $to . ' of <span id="total">' . $total . '</span>. ';
    if ($page > 1) {
        $html .= '<a href="' . e($base . 'page=' . ($page - 1)) . '" id="prev">‹ Previous</a> ';
    }
    $html .= "Page {$page} of {$pages} ";
    if ($page < $pages) {
        $html .= '<a href="' . e($base . 'page=' . ($page + 1)) . '" id="next">Next ›</a>';
    }
    return $html . '</p>';
}
