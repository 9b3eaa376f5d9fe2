// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title E-certificate anchor registry
/// @notice An ISSUER (e.g. the government e-certificate service or a tax office) anchors the hash of an
/// electronic certificate (주민등록등본, 가족관계증명서, 소득증명) issued to a subject address, with an
/// expiry. Only the hash is on chain. Lenders check {isValid} for the hashes a buyer presents.
contract CredentialRegistry is AccessControl {
    /// @notice Issuers of e-certificates.
    bytes32 public constant ISSUER_ROLE = keccak256("ISSUER_ROLE");

    /// @notice Kind of certificate.
    enum Kind {
        ResidentRegistration,
        FamilyRelation,
        Income
    }

    struct Credential {
        address issuer;
        uint40 expiry;
        uint40 anchoredAt;
        Kind kind;
        bool revoked;
        address subject;
    }

    mapping(bytes32 hash => Credential) private _credentials;

    /// @notice `hash` was already anchored.
    error CredentialAlreadyAnchored(bytes32 hash);
    /// @notice `hash` was never anchored.
    error UnknownCredential(bytes32 hash);
    /// @notice `caller` is not the issuer of `hash`.
    error NotCredentialIssuer(bytes32 hash, address caller);
    /// @notice The expiry `expiry` is not in the future (now = `nowTime`).
    error CredentialExpired(bytes32 hash, uint64 expiry, uint256 nowTime);
    /// @notice `hash` was already revoked.
    error CredentialAlreadyRevoked(bytes32 hash);
    /// @notice The subject was the zero address or the hash was zero.
    error InvalidCredential(bytes32 hash, address subject);

    /// @notice `issuer` anchored `hash` of a `kind` certificate issued to `subject`, valid until `expiry`.
    event CredentialAnchored(
        bytes32 indexed hash, address indexed issuer, address indexed subject, Kind kind, uint64 expiry, uint40 anchoredAt
    );
    /// @notice `issuer` revoked `hash`.
    event CredentialRevoked(bytes32 indexed hash, address indexed issuer);

    /// @param admin receives DEFAULT_ADMIN_ROLE and grants ISSUER_ROLE.
    constructor(address admin) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Anchor the hash of an e-certificate.
    /// @param hash hash of the certificate document.
    /// @param kind certificate kind.
    /// @param subject the person (address) the certificate is about.
    /// @param expiry UTC seconds after which the certificate is no longer valid; must be in the future.
    function anchor(bytes32 hash, Kind kind, address subject, uint64 expiry) external onlyRole(ISSUER_ROLE) {
        if (hash == bytes32(0) || subject == address(0)) revert InvalidCredential(hash, subject);
        if (expiry <= block.timestamp || expiry > type(uint40).max) {
            revert CredentialExpired(hash, expiry, block.timestamp);
        }
        Credential storage c = _credentials[hash];
        if (c.issuer != address(0)) revert CredentialAlreadyAnchored(hash);
        c.issuer = msg.sender;
        c.expiry = uint40(expiry);
        c.anchoredAt = uint40(block.timestamp);
        c.kind = kind;
        c.subject = subject;
        emit CredentialAnchored(hash, msg.sender, subject, kind, expiry, uint40(block.timestamp));
    }

    /// @notice Revoke a credential; only its issuer may.
    function revoke(bytes32 hash) external {
        Credential storage c = _credentials[hash];
        if (c.issuer == address(0)) revert UnknownCredential(hash);
        if (c.issuer != msg.sender) revert NotCredentialIssuer(hash, msg.sender);
        if (c.revoked) revert CredentialAlreadyRevoked(hash);
        c.revoked = true;
        emit CredentialRevoked(hash, msg.sender);
    }

    /// @notice The anchored record of `hash`.
    function credential(bytes32 hash)
        external
        view
        returns (address issuer, address subject, Kind kind, uint64 expiry, bool revoked, uint64 anchoredAt)
    {
        Credential storage c = _credentials[hash];
        if (c.issuer == address(0)) revert UnknownCredential(hash);
        return (c.issuer, c.subject, c.kind, c.expiry, c.revoked, c.anchoredAt);
    }

    /// @notice True when `hash` is anchored for `subject` and `kind`, not revoked, not expired, and its
    /// issuer still holds ISSUER_ROLE.
    function isValid(bytes32 hash, address subject, Kind kind) external view returns (bool) {
        Credential storage c = _credentials[hash];
        return c.issuer != address(0) && c.subject == subject && c.kind == kind && !c.revoked
            && block.timestamp <= c.expiry && hasRole(ISSUER_ROLE, c.issuer);
    }
}
