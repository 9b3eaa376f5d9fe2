// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice What the institutions' batch entry points share. Each item runs as an external call of the
/// contract to itself, so a failing item is rolled back alone and reported, and the others apply.
abstract contract BatchItems {
    /// @notice A batch's arrays differ in length: `dealIds` deal ids, `items` entries in another array.
    error LengthMismatch(uint256 dealIds, uint256 items);
    /// @notice Only this contract may call a batch item function; `caller` is not it.
    error NotSelf(address caller);
    /// @notice A batch item reverted without data (out of gas): the whole batch reverts, so that a short
    /// gas limit (or a gas estimate) cannot turn due items into failed ones. Resend with more gas.
    error ItemRevertedWithoutReason(uint256 dealId);

    /// @notice A batch item for `dealId` failed and was not applied; `reason` is its revert data (the same
    /// custom error the single-item call reverts with). The batch's other items are unaffected.
    event ItemFailed(uint256 indexed dealId, bytes reason);

    function _onlySelf() internal view {
        if (msg.sender != address(this)) revert NotSelf(msg.sender);
    }

    function _sameLength(uint256 dealIds, uint256 items) internal pure {
        if (dealIds != items) revert LengthMismatch(dealIds, items);
    }

    /// @dev Apply one batch item in its own call frame, so a failing item is rolled back alone and reported.
    function _tryItem(uint256 dealId, bytes memory call) internal {
        (bool ok, bytes memory reason) = address(this).call(call);
        if (ok) return;
        // every item failure carries a custom error (or Panic); no data means the item ran out of gas
        if (reason.length == 0) revert ItemRevertedWithoutReason(dealId);
        emit ItemFailed(dealId, reason);
    }
}
