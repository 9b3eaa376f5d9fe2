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
/// Every entry has its registrar receipt number and block time (the entries of one settlement store their
/// shared receipt once; see GapguRecord).
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
        // one slot, never zero (area > 0): updating the active list never writes a fresh slot
        uint64 areaCentiM2;
        uint192 activeMortgages; // 8 x uint24 을구 indexes, ascending rank, first `activeMortgageCount` used
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

    /// @dev Stored form of a 갑구 entry. `kind` is the GapguKind, plus RECEIPT_SHARED when the entry's
    /// receipt is not stored here but in the entry `ref` of 갑구 (or of 을구 with RECEIPT_IN_EULGU): the
    /// entries one settlement writes share its one receipt. Only Ownership entries (whose `ref` is
    /// otherwise unused, i.e. 0) share.
    struct GapguRecord {
        address holder;
        uint8 kind;
        uint40 time;
        uint24 ref;
        uint24 cancelledBy;
        bytes32 receipt;
        uint96 amount;
    }

    /// @dev Stored form of an 을구 entry; `kind` as in GapguRecord (only Mortgage entries share).
    struct EulguRecord {
        address creditor;
        uint8 kind;
        uint40 time;
        uint24 ref;
        uint16 rank;
        address debtor;
        uint96 maxSecured;
        bytes32 receipt;
    }

    uint8 private constant RECEIPT_SHARED = 0x80;
    uint8 private constant RECEIPT_IN_EULGU = 0x40;
    uint8 private constant KIND_MASK = 0x3f;

    mapping(bytes32 parcelId => Parcel) private _parcels;
    mapping(bytes32 parcelId => mapping(uint256 index => GapguRecord)) private _gapgu;
    mapping(bytes32 parcelId => mapping(uint256 index => EulguRecord)) private _eulgu;

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
        _recordOwnership(parcelId, p, owner, receipt, 0, 0);
    }

    /// @notice Record a transfer of ownership to `newOwner` (갑구).
    /// @dev The registrar is authoritative: blocking entries do not prevent this (e.g. an auction sale).
    function recordOwnershipTransfer(bytes32 parcelId, address newOwner, bytes32 receipt)
        external
        onlyRole(REGISTRAR_ROLE)
        returns (uint256 index)
    {
        if (newOwner == address(0)) revert ZeroAddress();
        return _recordOwnership(parcelId, _parcel(parcelId), newOwner, receipt, 0, 0);
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
        GapguRecord storage e = _gapgu[parcelId][index];
        e.holder = claimant;
        e.kind = uint8(kind);
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
        GapguRecord storage target = _gapgu[parcelId][blockingIndex];
        GapguKind kind = GapguKind(target.kind & KIND_MASK);
        if (kind == GapguKind.Ownership || kind == GapguKind.Cancellation) {
            revert NotABlockingEntry(parcelId, blockingIndex);
        }
        if (target.cancelledBy != 0) revert EntryNotActive(parcelId, blockingIndex);
        index = length;
        target.cancelledBy = uint24(index);
        GapguRecord storage e = _gapgu[parcelId][index];
        e.kind = uint8(GapguKind.Cancellation);
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
        return _registerMortgage(parcelId, creditor, debtor, maxSecured, receipt, false);
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
        // the settlement's discharges (just written) carry the same receipt: share it
        uint256 eulguLength = p.eulguLength;
        uint8 shared;
        uint24 ref;
        if (eulguLength != 0) (shared, ref) = _receiptSource(parcelId, true, eulguLength - 1, receipt);
        return _recordOwnership(parcelId, p, to, receipt, shared, ref);
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
        return _registerMortgage(parcelId, creditor, debtor, maxSecured, receipt, true);
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
        uint256 active = p.activeMortgages;
        indexes = new uint256[](count);
        for (uint256 i; i < count; ++i) {
            indexes[i] = uint24(active >> (24 * i));
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
        GapguRecord storage r = _gapgu[parcelId][index];
        uint8 kind = r.kind;
        entry = GapguEntry({
            holder: r.holder,
            kind: GapguKind(kind & KIND_MASK),
            time: r.time,
            ref: kind & RECEIPT_SHARED == 0 ? r.ref : 0,
            cancelledBy: r.cancelledBy,
            receipt: _receipt(parcelId, false, index),
            amount: r.amount
        });
        active = entry.kind != GapguKind.Cancellation && entry.cancelledBy == 0;
    }

    /// @notice 을구 entry `index`; `active` is true only for a mortgage not yet discharged.
    function eulguEntry(bytes32 parcelId, uint256 index) external view returns (EulguEntry memory entry, bool active) {
        Parcel storage p = _parcel(parcelId);
        if (index >= p.eulguLength) revert EntryOutOfRange(parcelId, index, p.eulguLength);
        EulguRecord storage r = _eulgu[parcelId][index];
        uint8 kind = r.kind;
        entry = EulguEntry({
            creditor: r.creditor,
            kind: EulguKind(kind & KIND_MASK),
            time: r.time,
            ref: kind & RECEIPT_SHARED == 0 ? r.ref : 0,
            rank: r.rank,
            debtor: r.debtor,
            maxSecured: r.maxSecured,
            receipt: _receipt(parcelId, true, index)
        });
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
        uint256 active = p.activeMortgages;
        for (uint256 i; i < count; ++i) {
            if (uint24(active >> (24 * i)) == index) return i;
        }
        return MAX_ACTIVE_MORTGAGES;
    }

    /// @dev `shared` != 0: the receipt is the one of entry `ref` (see GapguRecord), not stored again.
    function _recordOwnership(
        bytes32 parcelId,
        Parcel storage p,
        address owner,
        bytes32 receipt,
        uint8 shared,
        uint24 ref
    ) private returns (uint256 index) {
        index = p.gapguLength;
        GapguRecord storage e = _gapgu[parcelId][index];
        e.holder = owner;
        e.time = uint40(block.timestamp); // kind Ownership = 0
        if (shared == 0) {
            e.receipt = receipt;
        } else {
            e.kind = shared; // Ownership (0) | RECEIPT_SHARED [| RECEIPT_IN_EULGU]
            e.ref = ref;
        }
        p.owner = owner;
        p.gapguLength = uint24(index + 1);
        emit OwnershipRecorded(parcelId, index, owner, receipt, uint40(block.timestamp));
    }

    function _registerMortgage(
        bytes32 parcelId,
        address creditor,
        address debtor,
        uint256 maxSecured,
        bytes32 receipt,
        bool settlement
    ) private returns (uint256 index, uint16 rank) {
        if (creditor == address(0) || debtor == address(0)) revert ZeroAddress();
        if (maxSecured == 0 || maxSecured > type(uint96).max) revert InvalidMaxSecured(maxSecured);
        Parcel storage p = _parcel(parcelId);
        uint256 count = p.activeMortgageCount;
        if (count == MAX_ACTIVE_MORTGAGES) revert TooManyMortgages(parcelId, MAX_ACTIVE_MORTGAGES);
        index = p.eulguLength;
        rank = p.mortgagesRegistered + 1;
        uint8 shared;
        uint24 ref;
        // in a settlement, the ownership entry just written carries the same receipt: share it
        if (settlement) (shared, ref) = _receiptSource(parcelId, false, p.gapguLength - 1, receipt);
        EulguRecord storage e = _eulgu[parcelId][index];
        e.creditor = creditor;
        e.time = uint40(block.timestamp); // kind Mortgage = 0
        e.rank = rank;
        if (shared == 0) {
            e.receipt = receipt;
        } else {
            e.kind = shared; // Mortgage (0) | RECEIPT_SHARED [| RECEIPT_IN_EULGU]
            e.ref = ref;
        }
        e.debtor = debtor;
        e.maxSecured = uint96(maxSecured);
        p.activeMortgages |= uint192(index) << uint192(24 * count);
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
        if (EulguKind(_eulgu[parcelId][mortgageIndex].kind & KIND_MASK) != EulguKind.Mortgage) {
            revert NotAMortgage(parcelId, mortgageIndex);
        }
        uint256 slot = _activeSlot(p, mortgageIndex);
        if (slot == MAX_ACTIVE_MORTGAGES) revert EntryNotActive(parcelId, mortgageIndex);
        // remove from the active list keeping rank order (bounded by MAX_ACTIVE_MORTGAGES)
        uint256 count = p.activeMortgageCount;
        uint256 active = p.activeMortgages;
        uint256 below = (uint256(1) << (24 * slot)) - 1; // entries before `slot` stay, the rest move down one
        p.activeMortgages = uint192((active & below) | ((active >> 24) & ~below));
        p.activeMortgageCount = uint8(count - 1);
        EulguRecord storage e = _eulgu[parcelId][index];
        e.kind = uint8(EulguKind.Discharge);
        e.time = uint40(block.timestamp);
        e.ref = uint24(mortgageIndex);
        e.receipt = receipt;
        p.eulguLength = uint24(index + 1);
        emit MortgageDischarged(parcelId, index, mortgageIndex, receipt, uint40(block.timestamp));
    }

    /// @dev Where entry `index` of 을구 (`inEulgu`) or 갑구 keeps its receipt: (0, 0) if that entry was not
    /// written in this block with `receipt`, else the sharing flags and the index of the entry that stores it.
    function _receiptSource(bytes32 parcelId, bool inEulgu, uint256 index, bytes32 receipt)
        private
        view
        returns (uint8 shared, uint24 ref)
    {
        uint8 kind;
        uint40 time;
        uint24 storedRef;
        if (inEulgu) {
            EulguRecord storage r = _eulgu[parcelId][index];
            (kind, time, storedRef) = (r.kind, r.time, r.ref);
        } else {
            GapguRecord storage r = _gapgu[parcelId][index];
            (kind, time, storedRef) = (r.kind, r.time, r.ref);
        }
        if (time != block.timestamp) return (0, 0);
        if (kind & RECEIPT_SHARED != 0) {
            shared = kind & (RECEIPT_SHARED | RECEIPT_IN_EULGU);
            ref = storedRef;
        } else {
            shared = RECEIPT_SHARED | (inEulgu ? RECEIPT_IN_EULGU : 0);
            ref = uint24(index);
        }
        if (_storedReceipt(parcelId, shared & RECEIPT_IN_EULGU != 0, ref) != receipt) return (0, 0);
    }

    /// @dev The receipt of entry `index` of 을구 (`inEulgu`) or 갑구, following a shared receipt.
    function _receipt(bytes32 parcelId, bool inEulgu, uint256 index) private view returns (bytes32) {
        uint8 kind;
        uint24 ref;
        if (inEulgu) {
            EulguRecord storage r = _eulgu[parcelId][index];
            (kind, ref) = (r.kind, r.ref);
        } else {
            GapguRecord storage r = _gapgu[parcelId][index];
            (kind, ref) = (r.kind, r.ref);
        }
        if (kind & RECEIPT_SHARED == 0) return _storedReceipt(parcelId, inEulgu, index);
        return _storedReceipt(parcelId, kind & RECEIPT_IN_EULGU != 0, ref);
    }

    function _storedReceipt(bytes32 parcelId, bool inEulgu, uint256 index) private view returns (bytes32) {
        return inEulgu ? _eulgu[parcelId][index].receipt : _gapgu[parcelId][index].receipt;
    }
}
