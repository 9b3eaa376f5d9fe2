// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title Land register (부동산 등기부)
/// @notice One register per parcel with the three Korean sections:
/// - 표제부 (description): parcel number, location, area (m² x 100) and land use;
/// - 갑구 (gapgu, ownership section): Ownership, ProvisionalSeizure (가압류), Injunction (가처분),
///   Auction (경매) and Cancellation entries; a Cancellation points at an earlier blocking entry;
/// - 을구 (eulgu, rights section): Mortgage (근저당) and Discharge entries; a Discharge points at
///   an earlier Mortgage.
/// Entries are append-only: cancelling or discharging appends a new entry and the history stays.
/// Every entry stores its registrar receipt number and block time.
///
/// A parcel id is `keccak256(bytes(parcelNumber))` (see {parcelIdOf}).
/// Mortgage rank (순위번호) = 1 + number of mortgages ever registered on the parcel; priority
/// among active mortgages follows ascending rank. At most {MAX_ACTIVE_MORTGAGES} are active.
///
/// REGISTRAR_ROLE (the land registry) writes every kind of entry. SETTLEMENT_ROLE (granted to the
/// DealEscrow) may transfer ownership, discharge and register mortgages during one settlement.
/// Every call's cost is independent of how many parcels or entries exist.
contract LandRegister is AccessControl {
    /// @notice The land registry office.
    bytes32 public constant REGISTRAR_ROLE = keccak256("REGISTRAR_ROLE");
    /// @notice The escrow that settles deals in one transaction.
    bytes32 public constant SETTLEMENT_ROLE = keccak256("SETTLEMENT_ROLE");
    /// @notice Maximum number of simultaneously active mortgages on one parcel.
    uint256 public constant MAX_ACTIVE_MORTGAGES = 8;

    /// @notice Land use category (지목).
    enum LandUse {
        Building, // 대
        Field, // 전
        Paddy, // 답
        Orchard, // 과수원
        Forest, // 임야
        Factory, // 공장용지
        Road, // 도로
        Other
    }

    /// @notice Kind of a 갑구 entry.
    enum GapguKind {
        Ownership,
        ProvisionalSeizure,
        Injunction,
        Auction,
        Cancellation
    }

    /// @notice Kind of an 을구 entry.
    enum EulguKind {
        Mortgage,
        Discharge
    }

    struct Parcel {
        address owner; // current owner (last Ownership entry); zero = unknown parcel
        uint24 gapguLength;
        uint24 eulguLength;
        uint16 activeBlockings;
        uint16 mortgagesRegistered; // rank counter
        uint8 activeMortgageCount;
        LandUse landUse;
        uint24[8] activeMortgages; // 을구 indexes, ascending rank, first `activeMortgageCount` used
        uint64 areaCentiM2;
        string parcelNumber;
        string location;
    }

    /// @notice One 갑구 entry.
    /// @dev holder = owner (Ownership) or claimant (blocking); ref = cancelled entry (Cancellation);
    /// cancelledBy = index of the Cancellation that cancelled this blocking entry (0 = active).
    struct GapguEntry {
        address holder;
        GapguKind kind;
        uint40 time;
        uint24 ref;
        uint24 cancelledBy;
        bytes32 receipt;
        uint96 amount;
    }

    /// @notice One 을구 entry.
    /// @dev For a Discharge only kind, time, ref (the discharged mortgage) and receipt are set.
    struct EulguEntry {
        address creditor;
        EulguKind kind;
        uint40 time;
        uint24 ref;
        uint16 rank;
        address debtor;
        uint96 maxSecured;
        bytes32 receipt;
    }

    mapping(bytes32 parcelId => Parcel) private _parcels;
    mapping(bytes32 parcelId => mapping(uint256 index => GapguEntry)) private _gapgu;
    mapping(bytes32 parcelId => mapping(uint256 index => EulguEntry)) private _eulgu;

    /// @notice A parcel with this id is already registered.
    error ParcelAlreadyRegistered(bytes32 parcelId);
    /// @notice No parcel is registered under this id.
    error UnknownParcel(bytes32 parcelId);
    /// @notice The parcel description is invalid (empty number or location, zero area).
    error InvalidDescription(string parcelNumber, uint256 areaCentiM2);
    /// @notice An owner, claimant, creditor or debtor address was zero.
    error ZeroAddress();
    /// @notice The entry index is beyond the section's length.
    error EntryOutOfRange(bytes32 parcelId, uint256 index, uint256 length);
    /// @notice The entry was already cancelled or discharged.
    error EntryNotActive(bytes32 parcelId, uint256 index);
    /// @notice The 을구 entry at `index` is not a Mortgage.
    error NotAMortgage(bytes32 parcelId, uint256 index);
    /// @notice The 갑구 entry at `index` is not a blocking entry (ProvisionalSeizure, Injunction, Auction).
    error NotABlockingEntry(bytes32 parcelId, uint256 index);
    /// @notice `kind` is not a blocking kind.
    error NotABlockingKind(GapguKind kind);
    /// @notice The parcel already has `max` active mortgages.
    error TooManyMortgages(bytes32 parcelId, uint256 max);
    /// @notice A mortgage needs a non-zero maximum secured amount (채권최고액) that fits in 96 bits.
    error InvalidMaxSecured(uint256 maxSecured);
    /// @notice A blocking amount must fit in 96 bits.
    error AmountTooLarge(uint256 amount);
    /// @notice The settlement named `expected` as the transferor but `actual` owns the parcel.
    error OwnerMismatch(bytes32 parcelId, address expected, address actual);
    /// @notice The parcel has `activeBlockings` active blocking entries, so settlement cannot transfer it.
    error ParcelIsBlocked(bytes32 parcelId, uint256 activeBlockings);

    /// @notice 표제부 written: a new parcel was registered.
    event ParcelRegistered(
        bytes32 indexed parcelId, string parcelNumber, string location, uint64 areaCentiM2, LandUse landUse
    );
    /// @notice 갑구 entry `index` recorded `owner` as owner (first registration or transfer).
    event OwnershipRecorded(
        bytes32 indexed parcelId, uint256 indexed index, address indexed owner, bytes32 receipt, uint40 time
    );
    /// @notice 갑구 entry `index` recorded a blocking entry of `kind` for `claimant`.
    event BlockingRecorded(
        bytes32 indexed parcelId,
        uint256 indexed index,
        GapguKind kind,
        address indexed claimant,
        uint256 amount,
        bytes32 receipt,
        uint40 time
    );
    /// @notice 갑구 entry `index` cancelled blocking entry `cancelledIndex`.
    event BlockingCancelled(
        bytes32 indexed parcelId, uint256 indexed index, uint256 cancelledIndex, bytes32 receipt, uint40 time
    );
    /// @notice 을구 entry `index` registered a mortgage (근저당) of `rank`.
    event MortgageRegistered(
        bytes32 indexed parcelId,
        uint256 indexed index,
        address indexed creditor,
        address debtor,
        uint256 maxSecured,
        uint16 rank,
        bytes32 receipt,
        uint40 time
    );
    /// @notice 을구 entry `index` discharged mortgage entry `mortgageIndex`.
    event MortgageDischarged(
        bytes32 indexed parcelId, uint256 indexed index, uint256 mortgageIndex, bytes32 receipt, uint40 time
    );

    /// @param admin receives DEFAULT_ADMIN_ROLE and grants REGISTRAR_ROLE and SETTLEMENT_ROLE.
    constructor(address admin) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    // ------------------------------------------------------------------ registrar

    /// @notice Open the register of a parcel (표제부) and record its first owner (소유권보존) as 갑구 entry 0.
    /// @param parcelNumber the registry's unique number (지번); the parcel id is its keccak256.
    /// @param location address of the parcel.
    /// @param areaCentiM2 area in m² x 100.
    /// @param landUse land use category (지목).
    /// @param owner first owner.
    /// @param receipt registrar receipt number of the first ownership entry.
    /// @return parcelId keccak256(bytes(parcelNumber)).
    function registerParcel(
        string calldata parcelNumber,
        string calldata location,
        uint64 areaCentiM2,
        LandUse landUse,
        address owner,
        bytes32 receipt
    ) external onlyRole(REGISTRAR_ROLE) returns (bytes32 parcelId) {
        if (bytes(parcelNumber).length == 0 || bytes(location).length == 0 || areaCentiM2 == 0) {
            revert InvalidDescription(parcelNumber, areaCentiM2);
        }
        if (owner == address(0)) revert ZeroAddress();
        parcelId = keccak256(bytes(parcelNumber));
        Parcel storage p = _parcels[parcelId];
        if (p.owner != address(0)) revert ParcelAlreadyRegistered(parcelId);
        p.landUse = landUse;
        p.areaCentiM2 = areaCentiM2;
        p.parcelNumber = parcelNumber;
        p.location = location;
        emit ParcelRegistered(parcelId, parcelNumber, location, areaCentiM2, landUse);
        _recordOwnership(parcelId, p, owner, receipt);
    }

    /// @notice Record a transfer of ownership to `newOwner` (갑구).
    /// @dev The registrar is authoritative: blocking entries do not prevent this (e.g. an auction sale).
    function recordOwnershipTransfer(bytes32 parcelId, address newOwner, bytes32 receipt)
        external
        onlyRole(REGISTRAR_ROLE)
        returns (uint256 index)
    {
        if (newOwner == address(0)) revert ZeroAddress();
        return _recordOwnership(parcelId, _parcel(parcelId), newOwner, receipt);
    }

    /// @notice Record a blocking entry (가압류, 가처분, 경매) in 갑구.
    /// @param kind ProvisionalSeizure, Injunction or Auction.
    /// @param claimant the creditor or claimant holding the entry.
    /// @param amount claimed amount in won (0 = none stated).
    function recordBlocking(bytes32 parcelId, GapguKind kind, address claimant, uint256 amount, bytes32 receipt)
        external
        onlyRole(REGISTRAR_ROLE)
        returns (uint256 index)
    {
        if (kind == GapguKind.Ownership || kind == GapguKind.Cancellation) revert NotABlockingKind(kind);
        if (claimant == address(0)) revert ZeroAddress();
        if (amount > type(uint96).max) revert AmountTooLarge(amount);
        Parcel storage p = _parcel(parcelId);
        index = p.gapguLength;
        GapguEntry storage e = _gapgu[parcelId][index];
        e.holder = claimant;
        e.kind = kind;
        e.time = uint40(block.timestamp);
        e.receipt = receipt;
        if (amount != 0) e.amount = uint96(amount);
        p.gapguLength = uint24(index + 1);
        p.activeBlockings += 1;
        emit BlockingRecorded(parcelId, index, kind, claimant, amount, receipt, uint40(block.timestamp));
    }

    /// @notice Cancel active blocking entry `blockingIndex` by appending a Cancellation entry (갑구).
    function cancelBlocking(bytes32 parcelId, uint256 blockingIndex, bytes32 receipt)
        external
        onlyRole(REGISTRAR_ROLE)
        returns (uint256 index)
    {
        Parcel storage p = _parcel(parcelId);
        uint256 length = p.gapguLength;
        if (blockingIndex >= length) revert EntryOutOfRange(parcelId, blockingIndex, length);
        GapguEntry storage target = _gapgu[parcelId][blockingIndex];
        GapguKind kind = target.kind;
        if (kind == GapguKind.Ownership || kind == GapguKind.Cancellation) {
            revert NotABlockingEntry(parcelId, blockingIndex);
        }
        if (target.cancelledBy != 0) revert EntryNotActive(parcelId, blockingIndex);
        index = length;
        target.cancelledBy = uint24(index);
        GapguEntry storage e = _gapgu[parcelId][index];
        e.kind = GapguKind.Cancellation;
        e.time = uint40(block.timestamp);
        e.ref = uint24(blockingIndex);
        e.receipt = receipt;
        p.gapguLength = uint24(index + 1);
        p.activeBlockings -= 1;
        emit BlockingCancelled(parcelId, index, blockingIndex, receipt, uint40(block.timestamp));
    }

    /// @notice Register a mortgage (근저당) in 을구; its rank is assigned automatically.
    /// @param maxSecured 채권최고액 in won.
    function registerMortgage(
        bytes32 parcelId,
        address creditor,
        address debtor,
        uint256 maxSecured,
        bytes32 receipt
    ) external onlyRole(REGISTRAR_ROLE) returns (uint256 index, uint16 rank) {
        return _registerMortgage(parcelId, creditor, debtor, maxSecured, receipt);
    }

    /// @notice Discharge active mortgage entry `mortgageIndex` by appending a Discharge entry (을구).
    function dischargeMortgage(bytes32 parcelId, uint256 mortgageIndex, bytes32 receipt)
        external
        onlyRole(REGISTRAR_ROLE)
        returns (uint256 index)
    {
        return _dischargeMortgage(parcelId, mortgageIndex, receipt);
    }

    // ------------------------------------------------------------------ settlement

    /// @notice Settlement: transfer the parcel from `from` to `to`; requires `from` to own it and no
    /// active blocking entry.
    function settleOwnershipTransfer(bytes32 parcelId, address from, address to, bytes32 receipt)
        external
        onlyRole(SETTLEMENT_ROLE)
        returns (uint256 index)
    {
        if (to == address(0)) revert ZeroAddress();
        Parcel storage p = _parcel(parcelId);
        if (p.owner != from) revert OwnerMismatch(parcelId, from, p.owner);
        if (p.activeBlockings != 0) revert ParcelIsBlocked(parcelId, p.activeBlockings);
        return _recordOwnership(parcelId, p, to, receipt);
    }

    /// @notice Settlement: discharge active mortgage entry `mortgageIndex` (paid off from the proceeds).
    function settleDischarge(bytes32 parcelId, uint256 mortgageIndex, bytes32 receipt)
        external
        onlyRole(SETTLEMENT_ROLE)
        returns (uint256 index)
    {
        return _dischargeMortgage(parcelId, mortgageIndex, receipt);
    }

    /// @notice Settlement: register the buyer's lender's mortgage.
    function settleMortgage(bytes32 parcelId, address creditor, address debtor, uint256 maxSecured, bytes32 receipt)
        external
        onlyRole(SETTLEMENT_ROLE)
        returns (uint256 index, uint16 rank)
    {
        return _registerMortgage(parcelId, creditor, debtor, maxSecured, receipt);
    }

    // ------------------------------------------------------------------ views

    /// @notice The id of a parcel number: keccak256(bytes(parcelNumber)).
    function parcelIdOf(string calldata parcelNumber) external pure returns (bytes32) {
        return keccak256(bytes(parcelNumber));
    }

    /// @notice Whether the parcel is registered.
    function exists(bytes32 parcelId) external view returns (bool) {
        return _parcels[parcelId].owner != address(0);
    }

    /// @notice Current owner of the parcel.
    function ownerOf(bytes32 parcelId) external view returns (address) {
        return _parcel(parcelId).owner;
    }

    /// @notice 표제부 of the parcel.
    function parcel(bytes32 parcelId)
        external
        view
        returns (string memory parcelNumber, string memory location, uint64 areaCentiM2, LandUse landUse)
    {
        Parcel storage p = _parcel(parcelId);
        return (p.parcelNumber, p.location, p.areaCentiM2, p.landUse);
    }

    /// @notice Whether any blocking entry (가압류, 가처분, 경매) is active.
    function isBlocked(bytes32 parcelId) external view returns (bool) {
        return _parcel(parcelId).activeBlockings != 0;
    }

    /// @notice Number of active blocking entries.
    function activeBlockingCount(bytes32 parcelId) external view returns (uint256) {
        return _parcel(parcelId).activeBlockings;
    }

    /// @notice 을구 indexes of the active mortgages, in ascending rank (at most MAX_ACTIVE_MORTGAGES).
    function activeMortgages(bytes32 parcelId) public view returns (uint256[] memory indexes) {
        Parcel storage p = _parcel(parcelId);
        uint256 count = p.activeMortgageCount;
        uint24[8] memory active = p.activeMortgages;
        indexes = new uint256[](count);
        for (uint256 i; i < count; ++i) {
            indexes[i] = active[i];
        }
    }

    /// @notice Owner, number of active blocking entries and active mortgages in one call (used by settlement).
    function title(bytes32 parcelId)
        external
        view
        returns (address owner, uint256 activeBlockings, uint256[] memory mortgages)
    {
        Parcel storage p = _parcel(parcelId);
        return (p.owner, p.activeBlockings, activeMortgages(parcelId));
    }

    /// @notice Number of 갑구 entries ever recorded.
    function gapguLength(bytes32 parcelId) external view returns (uint256) {
        return _parcel(parcelId).gapguLength;
    }

    /// @notice Number of 을구 entries ever recorded.
    function eulguLength(bytes32 parcelId) external view returns (uint256) {
        return _parcel(parcelId).eulguLength;
    }

    /// @notice 갑구 entry `index`; `active` is false for a cancelled blocking entry and for
    /// Cancellation entries, true for a blocking entry in force and for Ownership entries.
    function gapguEntry(bytes32 parcelId, uint256 index)
        external
        view
        returns (GapguEntry memory entry, bool active)
    {
        Parcel storage p = _parcel(parcelId);
        if (index >= p.gapguLength) revert EntryOutOfRange(parcelId, index, p.gapguLength);
        entry = _gapgu[parcelId][index];
        active = entry.kind != GapguKind.Cancellation && entry.cancelledBy == 0;
    }

    /// @notice 을구 entry `index`; `active` is true only for a mortgage not yet discharged.
    function eulguEntry(bytes32 parcelId, uint256 index) external view returns (EulguEntry memory entry, bool active) {
        Parcel storage p = _parcel(parcelId);
        if (index >= p.eulguLength) revert EntryOutOfRange(parcelId, index, p.eulguLength);
        entry = _eulgu[parcelId][index];
        active = entry.kind == EulguKind.Mortgage && _activeSlot(p, index) < MAX_ACTIVE_MORTGAGES;
    }

    /// @notice Creditor of 을구 entry `index` if it is an active mortgage, else the zero address.
    function activeMortgageCreditor(bytes32 parcelId, uint256 index) external view returns (address) {
        Parcel storage p = _parcel(parcelId);
        if (index >= p.eulguLength || _activeSlot(p, index) == MAX_ACTIVE_MORTGAGES) return address(0);
        return _eulgu[parcelId][index].creditor;
    }

    // ------------------------------------------------------------------ internal

    function _parcel(bytes32 parcelId) private view returns (Parcel storage p) {
        p = _parcels[parcelId];
        if (p.owner == address(0)) revert UnknownParcel(parcelId);
    }

    /// @dev Position of `index` in the active-mortgage list, or MAX_ACTIVE_MORTGAGES when absent.
    function _activeSlot(Parcel storage p, uint256 index) private view returns (uint256) {
        uint256 count = p.activeMortgageCount;
        uint24[8] memory active = p.activeMortgages;
        for (uint256 i; i < count; ++i) {
            if (active[i] == index) return i;
        }
        return MAX_ACTIVE_MORTGAGES;
    }

    function _recordOwnership(bytes32 parcelId, Parcel storage p, address owner, bytes32 receipt)
        private
        returns (uint256 index)
    {
        index = p.gapguLength;
        GapguEntry storage e = _gapgu[parcelId][index];
        e.holder = owner;
        e.time = uint40(block.timestamp); // kind Ownership = 0
        e.receipt = receipt;
        p.owner = owner;
        p.gapguLength = uint24(index + 1);
        emit OwnershipRecorded(parcelId, index, owner, receipt, uint40(block.timestamp));
    }

    function _registerMortgage(
        bytes32 parcelId,
        address creditor,
        address debtor,
        uint256 maxSecured,
        bytes32 receipt
    ) private returns (uint256 index, uint16 rank) {
        if (creditor == address(0) || debtor == address(0)) revert ZeroAddress();
        if (maxSecured == 0 || maxSecured > type(uint96).max) revert InvalidMaxSecured(maxSecured);
        Parcel storage p = _parcel(parcelId);
        uint256 count = p.activeMortgageCount;
        if (count == MAX_ACTIVE_MORTGAGES) revert TooManyMortgages(parcelId, MAX_ACTIVE_MORTGAGES);
        index = p.eulguLength;
        rank = p.mortgagesRegistered + 1;
        _eulgu[parcelId][index] = EulguEntry({
            creditor: creditor,
            kind: EulguKind.Mortgage,
            time: uint40(block.timestamp),
            ref: 0,
            rank: rank,
            debtor: debtor,
            maxSecured: uint96(maxSecured),
            receipt: receipt
        });
        p.activeMortgages[count] = uint24(index);
        p.activeMortgageCount = uint8(count + 1);
        p.mortgagesRegistered = rank;
        p.eulguLength = uint24(index + 1);
        emit MortgageRegistered(parcelId, index, creditor, debtor, maxSecured, rank, receipt, uint40(block.timestamp));
    }

    function _dischargeMortgage(bytes32 parcelId, uint256 mortgageIndex, bytes32 receipt)
        private
        returns (uint256 index)
    {
        Parcel storage p = _parcel(parcelId);
        index = p.eulguLength;
        if (mortgageIndex >= index) revert EntryOutOfRange(parcelId, mortgageIndex, index);
        if (_eulgu[parcelId][mortgageIndex].kind != EulguKind.Mortgage) revert NotAMortgage(parcelId, mortgageIndex);
        uint256 slot = _activeSlot(p, mortgageIndex);
        if (slot == MAX_ACTIVE_MORTGAGES) revert EntryNotActive(parcelId, mortgageIndex);
        // remove from the active list keeping rank order (bounded by MAX_ACTIVE_MORTGAGES)
        uint256 count = p.activeMortgageCount;
        uint24[8] memory active = p.activeMortgages;
        for (uint256 i = slot; i + 1 < count; ++i) {
            active[i] = active[i + 1];
        }
        active[count - 1] = 0;
        p.activeMortgages = active;
        p.activeMortgageCount = uint8(count - 1);
        EulguEntry storage e = _eulgu[parcelId][index];
        e.kind = EulguKind.Discharge;
        e.time = uint40(block.timestamp);
        e.ref = uint24(mortgageIndex);
        e.receipt = receipt;
        p.eulguLength = uint24(index + 1);
        emit MortgageDischarged(parcelId, index, mortgageIndex, receipt, uint40(block.timestamp));
    }
}
