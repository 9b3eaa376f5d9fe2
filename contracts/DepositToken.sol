// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title KRW deposit token
/// @notice A tokenized bank deposit in Korean won: 1 token = 1 won (0 decimals).
/// Only holders of BANK_ROLE issue (mint) and redeem (burn) it, as in Korea's
/// tokenized-deposit pilot; everyone else can only transfer what they hold. Holders can approve by
/// EIP-2612 signature (permit), so a buyer's wallet signs once and the escrow pulls each payment when due.
contract DepositToken is ERC20, ERC20Permit, AccessControl {
    bytes32 public constant BANK_ROLE = keccak256("BANK_ROLE");

    /// @notice The amount to mint or burn was zero.
    error ZeroAmount();

    /// @notice A bank issued `amount` won of deposit tokens to `to`.
    event Issued(address indexed bank, address indexed to, uint256 amount);
    /// @notice A bank redeemed `amount` won of deposit tokens held by `from`.
    event Redeemed(address indexed bank, address indexed from, uint256 amount);

    /// @param admin receives DEFAULT_ADMIN_ROLE and may grant BANK_ROLE.
    constructor(address admin) ERC20("KRW Deposit Token", "KRWD") ERC20Permit("KRW Deposit Token") {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Whole won: the token has no fractional units.
    function decimals() public pure override returns (uint8) {
        return 0;
    }

    /// @notice Issue `amount` won to `to` against a deposit held at the calling bank.
    /// @dev Reverts with AccessControlUnauthorizedAccount without BANK_ROLE.
    function mint(address to, uint256 amount) external onlyRole(BANK_ROLE) {
        if (amount == 0) revert ZeroAmount();
        _mint(to, amount);
        emit Issued(msg.sender, to, amount);
    }

    /// @notice Redeem `amount` won held by `from` (a withdrawal at the calling bank).
    /// @dev A bank burning someone else's tokens spends the allowance `from` gave it,
    /// so a withdrawal needs the holder's consent.
    function burn(address from, uint256 amount) external onlyRole(BANK_ROLE) {
        if (amount == 0) revert ZeroAmount();
        if (from != msg.sender) _spendAllowance(from, msg.sender, amount);
        _burn(from, amount);
        emit Redeemed(msg.sender, from, amount);
    }
}
