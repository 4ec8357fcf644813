"""Local Microsoft Graph v1.0 + Entra login + Cloudflare SCIM v2 emulator (see docs/emulator.md)."""
